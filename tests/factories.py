"""factory-boy factories for every model. Amounts are consistent: a bag's total is
sub_total + shipping_total + tax_total - discount_total, and its SKUs add up to its sub_total."""

import datetime as dt
import hashlib
import json
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from payments.models import (
    PaymentTransaction,
    Recipient,
    ShopperRefund,
    Transfer,
    TransferReversal,
)
from platforms.models import (
    InboundEvent,
    Merchant,
    MerchantApiKey,
    MerchantMembership,
    OmsConnection,
    Platform,
    PrivacyRequest,
    SfccRefundMode,
    StoreConnection,
    WebhookSubscription,
)
from refunds.models import (
    App,
    AppMembership,
    Bag,
    ForwardingState,
    Order,
    OrderSku,
    ReconciliationFinding,
    Refund,
    RefundError,
    RefundEvent,
    RefundForwarding,
    RefundSku,
    RefundSource,
    RefundStatus,
)
from stripe_events.models import StripeEvent, StripeWebhookEndpoint
from stripe_sandbox import models as sandbox

DEFAULT_APP_SECRET = "test-app-secret"
DEFAULT_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.LazyFunction(lambda: make_password(DEFAULT_PASSWORD))


class OperatorFactory(UserFactory):
    username = factory.Sequence(lambda n: f"operator{n}")
    is_staff = True
    is_superuser = True


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    platform = Platform.SHOPIFY
    store_url = factory.Sequence(lambda n: f"https://store{n}.example.com")
    currency = "USD"
    stripe_account_id = factory.Sequence(lambda n: f"acct_merchant{n:06d}")
    sfcc_refund_mode = factory.LazyAttribute(
        lambda m: SfccRefundMode.MANUAL_NOTICE if m.platform == Platform.SFCC else ""
    )


class MerchantMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MerchantMembership

    merchant = factory.SubFactory(MerchantFactory)
    user = factory.SubFactory(UserFactory)


class MerchantApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MerchantApiKey

    merchant = factory.SubFactory(MerchantFactory)
    name = "Engineering"
    prefix = factory.Sequence(lambda n: f"vrk_{n:08d}")
    # The plaintext key of a factory row is f"{prefix}_merchant-api-key" (portal.keys hashes with SHA-256).
    key_hash = factory.LazyAttribute(lambda k: hashlib.sha256(f"{k.prefix}_merchant-api-key".encode()).hexdigest())


class StoreConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StoreConnection

    merchant = factory.SubFactory(MerchantFactory)
    credentials = factory.LazyFunction(lambda: {"access_token": "shpat_test"})
    webhook_secret = "whsec-test-secret"
    status = StoreConnection.Status.CONNECTED


class InboundEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InboundEvent

    connection = factory.SubFactory(StoreConnectionFactory)
    platform = factory.LazyAttribute(lambda e: e.connection.merchant.platform)
    event_id = factory.Sequence(lambda n: f"evt-{n}")
    topic = "refunds/create"
    headers = factory.LazyFunction(dict)
    body = "{}"


class OmsConnectionFactory(factory.django.DjangoModelFactory):
    """An SFCC merchant in the order management mode with its Salesforce org connected."""

    class Meta:
        model = OmsConnection

    merchant = factory.SubFactory(
        MerchantFactory, platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.ORDER_MANAGEMENT
    )
    base_url = factory.Sequence(lambda n: f"https://org{n}.my.salesforce.com")
    credentials = factory.LazyFunction(lambda: {"client_id": "3MVG9-test", "client_secret": "test-secret"})
    status = OmsConnection.Status.CONNECTED


class PrivacyRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PrivacyRequest

    kind = PrivacyRequest.Kind.CUSTOMER_REDACT
    platform = Platform.SHOPIFY
    merchant = factory.SubFactory(MerchantFactory)
    delivery_id = factory.Sequence(lambda n: f"wh-privacy-{n}")
    shop_domain = "blue-mug.myshopify.com"
    customer_external_id = "191167"
    order_ids = factory.LazyFunction(lambda: ["450789469"])
    due_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=30))
    requested_by = "platform:shopify"


class AppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = App

    name = factory.Sequence(lambda n: f"Channel {n}")
    secret_hash = factory.LazyFunction(lambda: make_password(DEFAULT_APP_SECRET))
    stripe_account_id = factory.Sequence(lambda n: f"acct_channel{n:06d}")
    commission_rate = Decimal("10.00")


class AppMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AppMembership

    app = factory.SubFactory(AppFactory)
    user = factory.SubFactory(UserFactory)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    app = factory.SubFactory(AppFactory)
    app_order_id = factory.Sequence(lambda n: f"app-order-{n}")
    currency = "USD"
    customer_email = factory.Sequence(lambda n: f"shopper{n}@example.com")


class BagFactory(factory.django.DjangoModelFactory):
    """A bag with consistent totals. Add SKUs with OrderSkuFactory (or use `with_skus`)."""

    class Meta:
        model = Bag

    order = factory.SubFactory(OrderFactory)
    merchant = factory.SubFactory(MerchantFactory)
    external_id = factory.Sequence(lambda n: f"{450789469 + n}")
    currency = "USD"
    sub_total = 10000
    shipping_total = 500
    tax_total = 800
    discount_total = 0
    total = factory.LazyAttribute(lambda b: b.sub_total + b.shipping_total + b.tax_total - b.discount_total)
    commission_rate = factory.LazyAttribute(lambda b: b.order.app.commission_rate)
    placed_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=3))


class OrderSkuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderSku

    bag = factory.SubFactory(BagFactory)
    external_id = factory.Sequence(lambda n: f"{866550311 + n}")
    sku_id = factory.Sequence(lambda n: f"SKU-{n}")
    name = factory.Sequence(lambda n: f"Product {n}")
    quantity = 1
    price = 5000
    line_price = factory.LazyAttribute(lambda s: s.price * s.quantity)


class PaymentTransactionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaymentTransaction
        django_get_or_create = ("order",)  # one payment per order

    order = factory.SubFactory(OrderFactory)
    gateway_transaction_id = factory.Sequence(lambda n: f"pi_test{n:08d}")
    gateway_charge_id = factory.Sequence(lambda n: f"ch_test{n:08d}")
    amount = 11300
    currency = "USD"


class TransferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Transfer

    bag = factory.SubFactory(BagFactory)
    payment_transaction = factory.SubFactory(PaymentTransactionFactory, order=factory.SelfAttribute("..bag.order"))
    recipient = Recipient.MERCHANT
    destination_account_id = factory.LazyAttribute(lambda t: t.bag.merchant.stripe_account_id)
    gateway_transfer_id = factory.Sequence(lambda n: f"tr_test{n:08d}")
    bag_amount = 10300
    bag_currency = "USD"
    amount = factory.LazyAttribute(lambda t: t.bag_amount)
    currency = "USD"


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    bag = factory.SubFactory(BagFactory)
    external_id = factory.Sequence(lambda n: f"{929361462 + n}")
    status = RefundStatus.PROCESSING
    sub_total_amount = 5000
    shipping_amount = 0
    tax_amount = 0
    amount = factory.LazyAttribute(lambda r: r.sub_total_amount + r.shipping_amount + r.tax_amount)
    refund_currency = factory.LazyAttribute(lambda r: r.bag.currency)
    platform_currency = "USD"
    reason = "Item returned by customer."
    source = RefundSource.PLATFORM_WEBHOOK


class RefundSkuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RefundSku

    refund = factory.SubFactory(RefundFactory)
    order_sku = factory.SubFactory(OrderSkuFactory, bag=factory.SelfAttribute("..refund.bag"))
    quantity_refunded = 1
    external_id = factory.LazyAttribute(lambda s: s.order_sku.external_id)


class RefundErrorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RefundError

    refund = factory.SubFactory(RefundFactory, status=RefundStatus.FAILED)
    error_code = 3001
    error_message = "Charge has already been refunded."
    gateway_code = "charge_already_refunded"


class RefundEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RefundEvent

    refund = factory.SubFactory(RefundFactory)
    kind = RefundEvent.Kind.RECORDED
    actor = "system"
    to_status = RefundStatus.PROCESSING


class TransferReversalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TransferReversal

    refund = factory.SubFactory(RefundFactory)
    transfer = factory.SubFactory(TransferFactory, bag=factory.SelfAttribute("..refund.bag"))
    amount = 1000
    bag_amount = 1000
    currency = "USD"
    idempotency_key = factory.Sequence(lambda n: f"test-reversal-{n}")


class ShopperRefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ShopperRefund

    refund = factory.SubFactory(RefundFactory)
    payment_transaction = factory.SubFactory(
        PaymentTransactionFactory, order=factory.SelfAttribute("..refund.bag.order")
    )
    amount = factory.LazyAttribute(lambda s: s.refund.amount)
    currency = "USD"
    idempotency_key = factory.Sequence(lambda n: f"test-shopper-refund-{n}")


# --- Stripe sandbox (its own tables; mostly built through the SDK, these are for admin tests) ---
class SandboxAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxAccount

    stripe_id = factory.Sequence(lambda n: f"acct_sandbox{n:08d}")


class SandboxPaymentIntentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxPaymentIntent

    stripe_id = factory.Sequence(lambda n: f"pi_sandbox{n:08d}")
    charge_id = factory.Sequence(lambda n: f"ch_sandbox{n:08d}")
    amount, currency, status = 10_000, "usd", "succeeded"


class SandboxTransferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxTransfer

    stripe_id = factory.Sequence(lambda n: f"tr_sandbox{n:08d}")
    destination = factory.SubFactory(SandboxAccountFactory)
    amount, currency = 6_000, "usd"


class SandboxTransferReversalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxTransferReversal

    stripe_id = factory.Sequence(lambda n: f"trr_sandbox{n:08d}")
    transfer = factory.SubFactory(SandboxTransferFactory)
    amount, currency = 1_000, "usd"


class SandboxRefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxRefund

    stripe_id = factory.Sequence(lambda n: f"re_sandbox{n:08d}")
    payment_intent = factory.SubFactory(SandboxPaymentIntentFactory)
    amount, currency, status = 1_000, "usd", "succeeded"


class SandboxBalanceTransactionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxBalanceTransaction

    stripe_id = factory.Sequence(lambda n: f"txn_sandbox{n:08d}")
    account = factory.SubFactory(SandboxAccountFactory)
    amount, currency, type, reporting_category = 10_000, "usd", "charge", "charge"
    source = factory.Sequence(lambda n: f"ch_sandbox{n:08d}")


class SandboxDisputeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxDispute

    stripe_id = factory.Sequence(lambda n: f"dp_sandbox{n:08d}")
    payment_intent = factory.SubFactory(SandboxPaymentIntentFactory)
    amount, currency = 10_000, "usd"


class SandboxEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxEvent

    stripe_id = factory.Sequence(lambda n: f"evt_sandbox{n:08d}")
    type = "refund.created"
    body = factory.LazyAttribute(lambda e: {"id": e.stripe_id, "object": "event", "type": e.type})


class SandboxIdempotencyKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxIdempotencyKey

    key = factory.Sequence(lambda n: f"refund-{n}-shopper-refund")
    method, path, fingerprint = "POST", "/v1/refunds", "0" * 64
    state, response_status, response_body = "done", 200, "{}"


class SandboxFaultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxFault

    kind = sandbox.FaultKind.HTTP_500


class SandboxRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = sandbox.SandboxRequest

    method, path, status_code = "POST", "/v1/refunds", 200
    request_id = factory.Sequence(lambda n: f"req_sandbox{n:06d}")


# --- notifications (outbound webhooks) ---
class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEndpoint

    app = factory.SubFactory(AppFactory)
    url = factory.Sequence(lambda n: f"https://hooks{n}.channel.example/violet")
    event_types = factory.LazyFunction(list)
    signing_secret = factory.Sequence(lambda n: f"whsec_test{n:032d}")


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    bag = factory.SubFactory(BagFactory)
    order = factory.SelfAttribute("bag.order")
    app = factory.SelfAttribute("bag.order.app")
    event_type = EventType.ORDER_UPDATED
    sequence = factory.Sequence(lambda n: n + 1)
    dedupe_key = factory.Sequence(lambda n: f"test:{n}")
    body = '{"id": 1, "bags": []}'


class WebhookDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookDelivery

    event = factory.SubFactory(WebhookEventFactory)
    endpoint = factory.SubFactory(WebhookEndpointFactory, app=factory.SelfAttribute("..event.app"))
    status = DeliveryStatus.FAILED
    attempts = 10
    last_status_code = 500
    last_error = "HTTP 500: Internal Server Error"


class ReconciliationFindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReconciliationFinding

    key = factory.Sequence(lambda n: f"reconcile:test:{n}")
    origin = ReconciliationFinding.Origin.RECONCILIATION
    kind = "total_mismatch"
    detail = factory.Sequence(lambda n: f"payment pi_test_{n}: 1000 USD refunded at Stripe, 0 here")
    last_seen_at = factory.LazyFunction(timezone.now)


class StripeWebhookEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StripeWebhookEndpoint

    name = factory.Sequence(lambda n: f"Stripe account {n}")
    signing_secrets = factory.Sequence(lambda n: [f"whsec_test_{n}"])


class StripeEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StripeEvent

    endpoint = factory.SubFactory(StripeWebhookEndpointFactory)
    stripe_id = factory.Sequence(lambda n: f"evt_test_{n:08d}")
    type = "refund.updated"
    object_id = "re_test_1"
    body = factory.LazyAttribute(
        lambda o: json.dumps(
            {"id": o.stripe_id, "object": "event", "type": o.type, "data": {"object": {"id": o.object_id}}}
        )
    )
    status = StripeEvent.Status.FAILED
    outcome = "Processing failed on a permanent error; replay the event once the cause is fixed."


class RefundForwardingFactory(factory.django.DjangoModelFactory):
    """A channel refund's trip to its platform, accepted there."""

    class Meta:
        model = RefundForwarding

    refund = factory.SubFactory(RefundFactory, source=RefundSource.CHANNEL_API)
    platform = "SHOPIFY"
    state = ForwardingState.ACCEPTED
    platform_refund_id = factory.Sequence(lambda n: f"{900000 + n}")


class WebhookSubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookSubscription

    connection = factory.SubFactory(StoreConnectionFactory)
    topic = factory.Sequence(lambda n: f"refunds/create-{n}")
    state = WebhookSubscription.State.ACTIVE

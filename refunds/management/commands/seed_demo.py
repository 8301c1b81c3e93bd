"""`manage.py seed_demo`: a realistic, idempotent demo world.

One merchant per platform (Shopify, Ecwid, Wix with orders before and after 2024-04-22, BigCommerce,
WooCommerce, SFCC in Option 1, Option 2 and with Salesforce Order Management), two channel apps,
~60 orders (some with several bags) charged and paid out in the Stripe sandbox, and refunds in every
settled status, moved through the real refund engine (faults injected into the sandbox produce the
FAILED and PARTIALLY_COMPLETED ones) and dated over the last 30 days. None is left PROCESSING: it
would turn "stuck" by itself with nothing working on it. Then what operators watch besides refunds:
Shopify webhooks received through the real ingest and processing (one PROCESSED, one FAILED because
it refunds a line for more than it cost, one AWAITING_ORDER), and a channel webhook endpoint whose
deliveries were attempted and recorded by the real delivery service against an in-process channel
(some delivered, some failing), nothing sent over the network. Running it again creates nothing new.
"""

import datetime as dt
import json
import random
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from notifications.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.sender import AttemptResult
from notifications.services.delivery import delivery_attempt
from notifications.services.outbox import event_resend
from notifications.signing import signing_secret_generate
from platforms.adapters.base import WebhookEnvelope
from platforms.adapters.shopify import SHOP_DOMAIN_HEADER, TOPIC_REFUNDS_CREATE
from platforms.models import Merchant, MerchantMembership, OmsConnection, StoreConnection
from platforms.services import event_ingest
from refunds import demo
from refunds.models import App, AppMembership, Bag, BagStatus, Order, OrderSku, Refund, RefundEvent, RefundSource
from refunds.services import (
    RefundSkuLine,
    refund_cancel,
    refund_mark_external,
    refund_record,
)
from refunds.services.checkout import order_charge_and_transfer
from violet_refunds.celery import app as celery_app

ORDER_COUNT = 60
WIX_CUTOFF = dt.datetime(2024, 4, 22, tzinfo=dt.UTC)
PRODUCTS = [
    ("Merino Crew Sweater", 8900),
    ("Trail Running Shoes", 12900),
    ("Stoneware Mug", 2400),
    ("Linen Throw Pillow", 3900),
    ("Insulated Bottle", 3200),
    ("Canvas Tote", 2800),
    ("Wool Beanie", 2500),
    ("Ceramic Vase", 6400),
    ("Rain Shell Jacket", 15900),
    ("Organic Cotton Tee", 3400),
]


DEMO_DAYS = 30


def _spread_over_the_last_30_days(refund: Refund, index: int) -> None:
    """Date a demo refund (and its trail) back 0-29 days, so the index's 30-day chart and the
    timelines read like a month of work rather than one burst at `make run`."""
    shift = dt.timedelta(days=(index * 7) % DEMO_DAYS, hours=index % 9)
    if not shift:
        return
    Refund.objects.filter(pk=refund.pk).update(
        date_created=F("date_created") - shift,
        date_last_modified=F("date_last_modified") - shift,
        date_completed=F("date_completed") - shift,
    )
    RefundEvent.objects.filter(refund=refund).update(date_created=F("date_created") - shift)


class Command(BaseCommand):
    help = "Create the demo world (idempotent): merchants, apps, orders in the Stripe sandbox, refunds."

    def handle(self, *args, **options):
        if settings.STRIPE_API_KEY:
            raise CommandError("seed_demo only runs against the Stripe sandbox (unset STRIPE_API_KEY).")
        # Demo refunds are processed in-process so the injected sandbox faults hit the intended refund.
        celery_app.conf.task_always_eager = True
        from stripe_sandbox import ledger

        rng = random.Random(20240422)  # deterministic demo data
        operator = self._operator()
        apps = [self._app(spec) for spec in demo.APPS]
        merchants = [self._merchant(spec) for spec in demo.MERCHANTS]
        from stripe_sandbox.models import SandboxAccount

        for account in [*(a.stripe_account_id for a in apps), *(m.stripe_account_id for m in merchants)]:
            if not SandboxAccount.objects.filter(stripe_id=account).exists():
                ledger.create_account(account_id=account, balance=0, currency="usd")

        created_orders = 0
        orders = []
        for index in range(ORDER_COUNT):
            order, created = self._order(index, rng, apps, merchants)
            created_orders += created
            orders.append(order)
        for order in orders:
            order_charge_and_transfer(order=order)
        created_refunds = self._refunds(orders, operator, ledger)
        created_events = self._inbound_events(merchants)
        created_deliveries = self._webhook_deliveries(apps[0])
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo world ready: {created_orders} new orders ({Order.objects.count()} in all), "
                f"{created_refunds} new refunds ({Refund.objects.count()} in all), "
                f"{created_events} new inbound events, {created_deliveries} new webhook deliveries."
            )
        )

    # ------------------------------------------------------------------------------------------------
    def _operator(self):
        user_model = get_user_model()
        operator, created = user_model.objects.get_or_create(
            username=demo.OPERATOR_USERNAME,
            defaults={"email": "ops@example.com", "is_staff": True, "is_superuser": True},
        )
        if created:
            operator.set_password(demo.OPERATOR_PASSWORD)
            operator.save()
        return operator

    def _user(self, username: str, password: str, email: str):
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
        if created:
            user.set_password(password)
            user.save()
        return user

    def _app(self, spec) -> App:
        app, _ = App.objects.get_or_create(
            name=spec["name"],
            defaults={
                "secret_hash": make_password(spec["secret"]),
                "stripe_account_id": spec["account"],
                "commission_rate": Decimal(spec["commission_rate"]),
                "allowed_redirect_hosts": spec["redirect_hosts"],
            },
        )
        user = self._user(spec["api_user"], demo.API_PASSWORD, f"{spec['api_user']}@example.com")
        AppMembership.objects.get_or_create(app=app, user=user, defaults={"role": AppMembership.Role.OWNER})
        return app

    def _merchant(self, spec) -> Merchant:
        merchant, _ = Merchant.objects.get_or_create(
            name=spec["name"],
            defaults={
                "platform": spec["platform"],
                "store_url": spec["store_url"],
                "currency": "USD",
                "stripe_account_id": f"acct_demo_{spec['key']}",
                "sfcc_refund_mode": spec["sfcc_refund_mode"],
            },
        )
        StoreConnection.objects.get_or_create(
            merchant=merchant,
            defaults={
                "credentials": spec["credentials"],
                "status": StoreConnection.Status.CONNECTED,
                "last_verified_at": timezone.now(),
            },
        )
        if spec.get("oms"):
            # Seeded as if connected and synced a few minutes ago (connecting for real calls the org).
            now = timezone.now()
            OmsConnection.objects.get_or_create(
                merchant=merchant,
                defaults={
                    **spec["oms"],
                    "status": OmsConnection.Status.CONNECTED,
                    "last_verified_at": now,
                    "cursor": now - dt.timedelta(minutes=4),
                    "last_run_at": now - dt.timedelta(minutes=4),
                    "last_success_at": now - dt.timedelta(minutes=4),
                    "api_usage": "api-usage=1840/100000",
                },
            )
        username = demo.merchant_username(spec["key"])
        user = self._user(username, demo.MERCHANT_PASSWORD, f"{username}@example.com")
        MerchantMembership.objects.get_or_create(merchant=merchant, user=user)
        return merchant

    @staticmethod
    def _external_id(merchant: Merchant, rng: random.Random) -> str:
        if merchant.platform == "SHOPIFY":
            return str(5_100_000_000_000 + rng.randrange(10**9))
        if merchant.platform == "ECWID":
            return str(rng.randrange(100_000_000, 999_999_999))
        if merchant.platform == "WIX":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if merchant.platform in {"BIGCOMMERCE", "WOOCOMMERCE"}:
            return str(rng.randrange(100, 99_999))
        return f"{rng.randrange(10**7, 10**8):08d}"

    def _order(self, index: int, rng: random.Random, apps, merchants) -> tuple[Order, bool]:
        app = apps[index % len(apps)]
        existing = Order.objects.filter(app=app, app_order_id=f"demo-{index}").first()
        bag_count = 1 if index % 4 else rng.choice([2, 3])
        # The first 25 orders (the refund scenarios) rotate through every merchant.
        first = merchants[index % len(merchants)]
        chosen = [first, *rng.sample([m for m in merchants if m != first], bag_count - 1)]
        placed_draws = [rng.random() for _ in chosen]
        line_draws = [[(rng.choice(PRODUCTS), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))] for _ in chosen]
        shipping_draws = [rng.choice([0, 499, 899]) for _ in chosen]
        external_draws = [self._external_id(m, rng) for m in chosen]
        discount = 500 if index % 10 == 7 else 0
        if existing:
            return existing, False
        now = timezone.now()
        with transaction.atomic():
            order = Order.objects.create(
                app=app, app_order_id=f"demo-{index}", customer_email=f"shopper{index}@example.com"
            )
            for merchant, draw, lines, shipping, external_id in zip(
                chosen, placed_draws, line_draws, shipping_draws, external_draws, strict=True
            ):
                if merchant.platform == "WIX" and index % 2:
                    placed_at = WIX_CUTOFF - dt.timedelta(days=10 + int(draw * 90))
                else:
                    placed_at = now - dt.timedelta(days=1 + int(draw * 60))
                sub_total = sum(price * qty for (_, price), qty in lines)
                tax = (sub_total * 8 + 50) // 100
                bag = Bag.objects.create(
                    order=order,
                    merchant=merchant,
                    external_id=external_id,
                    status=BagStatus.COMPLETED if draw > 0.5 else BagStatus.ACCEPTED,
                    currency="USD",
                    sub_total=sub_total,
                    shipping_total=shipping,
                    tax_total=tax,
                    discount_total=discount if merchant == first else 0,
                    total=sub_total + shipping + tax - (discount if merchant == first else 0),
                    commission_rate=app.commission_rate,
                    placed_at=placed_at,
                )
                for line_no, ((name, price), qty) in enumerate(lines):
                    OrderSku.objects.create(
                        bag=bag,
                        external_id=f"{external_id}-{line_no + 1}",
                        sku_id=f"SKU-{name.upper().replace(' ', '-')[:20]}",
                        name=name,
                        quantity=qty,
                        price=price,
                        line_price=price * qty,
                    )
            bags = list(order.bags.all())
            order.sub_total = sum(b.sub_total for b in bags)
            order.shipping_total = sum(b.shipping_total for b in bags)
            order.tax_total = sum(b.tax_total for b in bags)
            order.discount_total = sum(b.discount_total for b in bags)
            order.total = sum(b.total for b in bags)
            order.save()
        return order, True

    # ------------------------------------------------------------------------------------------------
    def _refunds(self, orders: list[Order], operator, ledger) -> int:
        """Refund scenarios on the first orders' first bags; each keyed by a fixed external id."""
        source_by_platform = {
            "SHOPIFY": RefundSource.PLATFORM_WEBHOOK,
            "ECWID": RefundSource.PLATFORM_WEBHOOK,
            "WIX": RefundSource.PLATFORM_WEBHOOK,
            "SFCC": RefundSource.PLATFORM_POLL,
            "BIGCOMMERCE": RefundSource.PLATFORM_WEBHOOK,
            "WOOCOMMERCE": RefundSource.PLATFORM_WEBHOOK,
        }
        scenarios = (
            [("full", None)] * 8
            + [("skus", None)] * 5
            + [("amount", None)] * 3
            + [("full", "charge_already_refunded")] * 2
            + [("full", "charge_disputed")]
            + [("full", "balance_insufficient")] * 2
            + [("full", None)] * 2
            + [("external", None), ("canceled", None), ("channel", None), ("notice", None)]
        )
        created = 0
        for index, (kind, fault) in enumerate(scenarios):
            bag = orders[index].bags.select_related("merchant").order_by("pk").first()
            external_id = f"demo-refund-{index}"
            if Refund.objects.filter(bag=bag, external_id=external_id).exists():
                continue
            merchant = bag.merchant
            source = source_by_platform[merchant.platform]
            if merchant.sfcc_refund_mode == "MANUAL_NOTICE" or kind == "notice":
                source = RefundSource.MERCHANT_NOTICE
            if kind == "channel":
                source = RefundSource.CHANNEL_API
            kwargs = {
                "bag": bag,
                "source": source,
                "actor": "demo",
                "external_id": external_id,
                "reason": "Item returned by customer.",
                "reason_code": "CUSTOMER",
            }
            if kind == "skus":
                sku = bag.skus.order_by("pk").first()
                kwargs["skus"] = [RefundSkuLine(order_sku_id=sku.pk, quantity=1)]
            elif kind in {"amount", "channel"}:
                kwargs["amount"] = max(bag.total // 3, 100)
            if fault:
                path = "/v1/transfers/*/reversals" if fault == "balance_insufficient" else "/v1/refunds"
                ledger.inject_fault(fault, times=1, path=path)
            # Every demo refund is settled when seeding ends: a PROCESSING one would turn "stuck" by
            # itself REFUND_STUCK_AFTER_SECONDS later, with nothing in the demo working on it.
            deferred = kind in {"external", "canceled"}
            result = refund_record(**kwargs, enqueue=not deferred)
            created += result.created
            if kind == "external":
                refund_mark_external(
                    refund=result.refund, user=operator, note="Merchant refunded by bank transfer (demo)."
                )
            elif kind == "canceled":
                refund_cancel(refund=result.refund, user=operator, note="Duplicate notice (demo).")
            if fault:
                ledger.clear_faults()
            if result.created:
                _spread_over_the_last_30_days(result.refund, index)
        return created

    # ------------------------------------------------------------------------------------------------
    def _inbound_events(self, merchants: list[Merchant]) -> int:
        """Three Shopify `refunds/create` webhooks for Northwind Outfitters, stored and processed by the
        real ingest (processing runs in-process: the demo's tasks are eager): one recorded as a refund
        (PROCESSED), one refunding a line for more than it cost (FAILED: the refund rules refuse it,
        and the page says a replay cannot fix that), one for an order that is not (yet) a network
        order (AWAITING_ORDER). Each keyed by a fixed event id: ingested once."""
        shopify = next(m for m in merchants if m.platform == "SHOPIFY")
        connection = StoreConnection.objects.get(merchant=shopify)
        free_bags = [
            bag
            for bag in Bag.objects.filter(merchant=shopify, status__in=[BagStatus.ACCEPTED, BagStatus.COMPLETED])
            .prefetch_related("skus")
            .order_by("pk")
            if not bag.refunds.exists()
        ]
        if len(free_bags) < 2:
            return 0
        processed_bag, failed_bag = free_bags[0], free_bags[-1]
        processed_sku = processed_bag.skus.order_by("pk").first()
        failed_sku = failed_bag.skus.order_by("pk").first()
        webhooks = [
            (
                "demo-shopify-refund-processed",
                _shopify_refund_payload(
                    refund_id=880_000_001,
                    order_id=processed_bag.external_id,
                    line_external_id=processed_sku.external_id,
                    quantity=1,
                    subtotal=processed_sku.price,
                    tax=(processed_sku.price * 8 + 50) // 100,
                    note="Returned: wrong size.",
                ),
            ),
            (
                # One unit refunded for the price of the line plus 50.00: more than the line cost.
                "demo-shopify-refund-over-line",
                _shopify_refund_payload(
                    refund_id=880_000_011,
                    order_id=failed_bag.external_id,
                    line_external_id=failed_sku.external_id,
                    quantity=1,
                    subtotal=failed_sku.price + 5000,
                    tax=0,
                    note="Goodwill refund entered on the line.",
                ),
            ),
            (
                "demo-shopify-refund-unknown-order",
                _shopify_refund_payload(
                    refund_id=880_000_021,
                    order_id="5100999000123",
                    line_external_id=None,
                    quantity=0,
                    subtotal=0,
                    tax=1250,
                    note="Refund on an order placed in the store itself.",
                ),
            ),
        ]
        created = 0
        for event_id, body in webhooks:
            headers = {
                "X-Shopify-Topic": TOPIC_REFUNDS_CREATE,
                SHOP_DOMAIN_HEADER: connection.credentials["shop_domain"],
                "X-Shopify-Webhook-Id": event_id,
            }
            with transaction.atomic():
                result = event_ingest(
                    connection=connection,
                    envelope=WebhookEnvelope(event_id=event_id, topic=TOPIC_REFUNDS_CREATE),
                    body=body,
                    headers=headers,
                    remote_ip="203.0.113.7",
                )
            created += result.created
        return created

    def _webhook_deliveries(self, app: App) -> int:
        """The first demo channel's webhook endpoint and a few deliveries of its refunds' events,
        claimed, attempted and recorded by the real delivery service against the in-process demo
        channel: some delivered, some failing (a 503 with its reply, a timeout), retried later."""
        if WebhookEndpoint.objects.filter(app=app).exists():
            return 0
        # Created PAUSED: the resends below publish their deliveries on commit, and an attempt then
        # (tasks are eager here) would go to the real sender; a paused endpoint's delivery waits.
        endpoint = WebhookEndpoint.objects.create(
            app=app,
            url=DEMO_WEBHOOK_URL,
            signing_secret=signing_secret_generate(),
            status=WebhookEndpoint.Status.PAUSED,
        )
        events: list[WebhookEvent] = []
        seen_bags: set[int] = set()
        # One event per bag: a bag's later events wait behind an unfinished earlier one.
        for event in WebhookEvent.objects.filter(app=app, refund__isnull=False, resent_from=None).order_by("pk"):
            if event.bag_id not in seen_bags:
                seen_bags.add(event.bag_id)
                events.append(event)
            if len(events) == len(DEMO_CHANNEL_ANSWERS):
                break
        resent = [event_resend(event=event, actor="demo", endpoint=endpoint).event for event in events]
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status=WebhookEndpoint.Status.ACTIVE)
        deliveries = WebhookDelivery.objects.filter(endpoint=endpoint, event__in=resent, status=DeliveryStatus.CREATED)
        by_event = {delivery.event_id: delivery.pk for delivery in deliveries}
        for event, answer in zip(resent, DEMO_CHANNEL_ANSWERS, strict=False):
            delivery_attempt(delivery_id=by_event[event.pk], send=_demo_channel(answer))
        return len(by_event)


# --------------------------------------------------------------------------------------------------
# Inbound platform webhooks and outbound channel webhooks
# --------------------------------------------------------------------------------------------------

# The demo channel's webhook address: TEST-NET-1 (RFC 5737), reserved for documentation. The sender
# refuses a non-public address before opening a socket, so an attempt made later (an operator's
# repair during `make run` writes events) fails at once and nothing leaves the machine. The
# registration service refuses such an address outside DEBUG for the same reason, hence the row is
# created here directly.
DEMO_WEBHOOK_URL = "https://192.0.2.10/aurora/violet-webhooks"


def _demo_channel(answer: AttemptResult):
    """The demo channel's receiver, in process: hands the delivery service `answer` as if the channel
    had given it (delivered, or failing the ways channels fail), without any request being made."""

    def send(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> AttemptResult:
        return answer

    return send


DEMO_CHANNEL_ANSWERS = (
    *[AttemptResult(status_code=200, error="", duration_ms=40 + 7 * n) for n in range(4)],
    AttemptResult(
        status_code=503,
        error="HTTP 503",
        duration_ms=212,
        reply_excerpt='{"error": "upstream_unavailable", "message": "Order service is down for maintenance."}',
    ),
    AttemptResult(status_code=None, error="No answer within 10 s.", duration_ms=10_000),
)


def _shopify_refund_payload(
    *, refund_id: int, order_id: str, line_external_id: str | None, quantity: int, subtotal: int, tax: int, note: str
) -> str:
    def dollars(minor: int) -> str:
        return f"{minor / 100:.2f}"

    lines = []
    if line_external_id is not None:
        lines.append(
            {
                "id": refund_id + 1,
                "quantity": quantity,
                "line_item_id": line_external_id,
                "restock_type": "return",
                "subtotal": dollars(subtotal),
                "total_tax": dollars(tax),
            }
        )
    return json.dumps(
        {
            "id": refund_id,
            "order_id": order_id,
            "note": note,
            "restock": True,
            "refund_line_items": lines,
            "refund_shipping_lines": [],
            "order_adjustments": [],
            "transactions": [
                {
                    "id": refund_id + 2,
                    "order_id": order_id,
                    "kind": "refund",
                    "status": "success",
                    "amount": dollars(subtotal + tax),
                    "currency": "USD",
                }
            ],
        }
    )

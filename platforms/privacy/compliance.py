"""Shopify's mandatory compliance webhooks (issue #22 item 3), recorded as PrivacyRequest rows.

Payloads as Shopify documents them (shopify.dev, "Privacy law compliance"):
- `customers/data_request`: {shop_id, shop_domain, orders_requested: [order ids],
  customer: {id, email, phone}, data_request: {id}}: we assemble what we hold on the customer for
  the merchant (PrivacyRequest.export: a download in the portal, and an e-mail to the merchant's
  portal users saying it is ready; the e-mail itself carries no personal data);
- `customers/redact`: {shop_id, shop_domain, customer: {id, email, phone}, orders_to_redact: [ids]}:
  the customer's personal data is erased from our orders and stored payloads (platforms.privacy.erasure);
- `shop/redact`: {shop_id, shop_domain} (48 hours after uninstall): every shopper's personal data
  of the shop, its stored payloads, and its credentials (a disconnect).

The receiver verifies the HMAC (401 otherwise), records the request (idempotent on the delivery
id: a redelivery records nothing new) and answers at once; the work runs in a task after commit.
The request keeps the shopper only as the platform's customer id and a hash of the e-mail. The
e-mail itself is needed to find the shopper's rows; it waits encrypted on the request
(`subject_email`) and is wiped as soon as the request is done. Each request is due 30 days after
it arrived (Shopify's deadline); the admin lists open ones by due date.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from platforms import tasks
from platforms.adapters.base import PayloadMalformed, parse_json
from platforms.models import Merchant, PrivacyRequest, StoreConnection
from platforms.privacy.disconnect import store_connection_disconnect
from platforms.privacy.erasure import email_sha256, merchant_customer_data_erase, shopper_erase
from refunds.models import Bag, Order, Refund

logger = logging.getLogger(__name__)

# Shopify: "complete the action within 30 days of receiving the request".
PRIVACY_REQUEST_DUE_DAYS = 30

TOPIC_KINDS = {
    "customers/data_request": PrivacyRequest.Kind.CUSTOMER_DATA_REQUEST,
    "customers/redact": PrivacyRequest.Kind.CUSTOMER_REDACT,
    "shop/redact": PrivacyRequest.Kind.SHOP_REDACT,
}


@dataclass(frozen=True)
class ReceiveResult:
    request: PrivacyRequest
    created: bool


def _ids(values) -> list[str]:
    return [str(v) for v in values or [] if isinstance(v, int | str) and not isinstance(v, bool) and str(v)][:1000]


def privacy_request_receive(
    *, platform: str, topic: str, delivery_id: str, body: bytes | str, connection: StoreConnection | None
) -> ReceiveResult:
    """Record an authenticated compliance delivery once, and enqueue its processing on commit."""
    payload = parse_json(body)
    kind = TOPIC_KINDS.get(topic)
    if kind is None:
        raise PayloadMalformed(f"{topic!r} is not a compliance topic.")
    customer_field = payload.get("customer")
    customer: dict = customer_field if isinstance(customer_field, dict) else {}
    email = str(customer.get("email") or "").strip()
    order_ids = _ids(payload.get("orders_to_redact") or payload.get("orders_requested"))
    existing = PrivacyRequest.objects.filter(platform=platform, delivery_id=delivery_id).first()
    if existing is not None:
        return ReceiveResult(existing, created=False)
    try:
        with transaction.atomic():
            request = PrivacyRequest.objects.create(
                kind=kind,
                platform=platform,
                merchant_id=connection.merchant_id if connection is not None else None,
                delivery_id=delivery_id[:255],
                shop_domain=str(payload.get("shop_domain") or "")[:255],
                customer_external_id=str(customer.get("id") or "")[:255],
                email_sha256=email_sha256(email),
                subject_email=email,
                order_ids=order_ids,
                due_at=timezone.now() + timedelta(days=PRIVACY_REQUEST_DUE_DAYS),
                requested_by=f"platform:{platform.lower()}",
            )
            transaction.on_commit(lambda: _enqueue(request.pk))
    except IntegrityError:
        return ReceiveResult(PrivacyRequest.objects.get(platform=platform, delivery_id=delivery_id), created=False)
    return ReceiveResult(request, created=True)


def _enqueue(request_id: int) -> None:
    try:
        tasks.process_privacy_request.delay(request_id)
    except Exception:  # broker down: the daily retention run processes open requests too
        logger.exception("Could not enqueue privacy request %s; the daily run will do it", request_id)


def order_anonymized_erase(*, connection: StoreConnection, platform: str, delivery_id: str, order_id: str) -> bool:
    """The platform anonymized one order (Wix `triggeredByAnonymizeRequest`): erase our copy of its
    shopper data now (a few updates) and record it. Idempotent on the delivery id."""
    if PrivacyRequest.objects.filter(platform=platform, delivery_id=delivery_id).exists():
        return False
    result = shopper_erase(merchant=connection.merchant, external_order_ids=(order_id,))
    now = timezone.now()
    try:
        with transaction.atomic():
            PrivacyRequest.objects.create(
                kind=PrivacyRequest.Kind.ERASURE,
                state=PrivacyRequest.State.DONE,
                platform=platform,
                merchant_id=connection.merchant_id,
                delivery_id=delivery_id[:255],
                order_ids=[order_id],
                due_at=now,
                completed_at=now,
                outcome=result.describe(),
                requested_by=f"platform:{platform.lower()}",
            )
    except IntegrityError:
        return False
    return True


def privacy_request_process(request_id: int) -> PrivacyRequest | None:
    """Do what the request asks (idempotent: a DONE request is left alone)."""
    request = PrivacyRequest.objects.select_related("merchant").filter(pk=request_id).first()
    if request is None or request.state == PrivacyRequest.State.DONE:
        return request
    merchant = request.merchant
    try:
        if request.kind == PrivacyRequest.Kind.CUSTOMER_REDACT:
            if merchant is None:
                outcome = "No store connection names this shop: we hold nothing of it."
            else:
                result = shopper_erase(
                    email=request.subject_email, merchant=merchant, external_order_ids=tuple(request.order_ids)
                )
                outcome = result.describe()
        elif request.kind == PrivacyRequest.Kind.CUSTOMER_DATA_REQUEST:
            request.export = customer_data_export(request.subject_email, merchant, tuple(request.order_ids))
            outcome = (
                f"Export assembled: {len(request.export['orders'])} order(s), "
                f"{len(request.export['refunds'])} refund(s)."
            )
        elif request.kind == PrivacyRequest.Kind.SHOP_REDACT:
            if merchant is None:
                outcome = "No store connection names this shop: we hold nothing of it."
            else:
                result = merchant_customer_data_erase(merchant)
                connection = StoreConnection.objects.filter(merchant=merchant).first()
                if connection is not None:
                    store_connection_disconnect(connection=connection, actor="platform:shopify", reason="shop/redact")
                outcome = f"{result.describe()} Credentials wiped."
        else:
            outcome = "Nothing to do."
    except Exception as exc:
        logger.exception("Privacy request %s failed", request.pk)
        PrivacyRequest.objects.filter(pk=request.pk).update(
            state=PrivacyRequest.State.FAILED, outcome=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    request.state = PrivacyRequest.State.DONE
    request.completed_at = timezone.now()
    request.outcome = outcome
    request.subject_email = ""  # needed only to find the shopper's rows
    request.save(update_fields=["state", "completed_at", "outcome", "subject_email", "export", "date_last_modified"])
    if request.kind == PrivacyRequest.Kind.CUSTOMER_DATA_REQUEST and merchant is not None:
        transaction.on_commit(lambda: _tell_merchant_export_ready(request))
    return request


def privacy_requests_open_process() -> int:
    """Daily safety net: requests whose task message was lost are processed now."""
    count = 0
    for request_id in PrivacyRequest.objects.filter(state=PrivacyRequest.State.RECEIVED).values_list("pk", flat=True):
        privacy_request_process(request_id)
        count += 1
    return count


def customer_data_export(email: str, merchant: Merchant | None, external_order_ids: tuple[str, ...]) -> dict:
    """What we hold on one shopper for one merchant: their orders (contact e-mail, amounts, status),
    the merchant's bags of them, and the refunds. Raw platform payloads are the merchant's own data
    (their store sent them) and are not repeated here."""
    if merchant is None:
        return {"orders": [], "refunds": []}
    bags = Bag.objects.filter(merchant=merchant).select_related("order")
    by_order = bags.filter(external_id__in=external_order_ids) if external_order_ids else bags.none()
    if email:
        by_order = by_order | bags.filter(order__customer_email__iexact=email)
    bag_list = list(by_order.distinct())
    orders = []
    for bag in bag_list:
        order: Order = bag.order
        orders.append(
            {
                "platform_order_id": bag.external_id,
                "order_id": order.pk,
                "customer_email": order.customer_email,
                "placed_at": bag.placed_at.isoformat() if bag.placed_at else None,
                "status": bag.status,
                "currency": bag.currency,
                "total_minor_units": bag.total,
            }
        )
    refunds = [
        {
            "platform_order_id": refund.bag.external_id,
            "refund_id": refund.pk,
            "status": refund.status,
            "amount_minor_units": refund.amount,
            "currency": refund.refund_currency,
            "reason": refund.reason,
            "date_created": refund.date_created.isoformat(),
        }
        for refund in Refund.objects.filter(bag__in=bag_list).select_related("bag")
    ]
    return {"merchant": merchant.name, "orders": orders, "refunds": refunds}


def _tell_merchant_export_ready(request: PrivacyRequest) -> None:
    merchant = request.merchant
    if merchant is None:
        return
    recipients = sorted({user.email for user in merchant.users.all() if user.email})
    if not recipients:
        return
    try:
        send_mail(
            subject="A customer data request is ready",
            message=(
                f"Shopify forwarded a customer data request for {merchant.name} (request #{request.pk}, "
                f"customer {request.customer_external_id or 'unknown'}). What we hold is ready to download "
                "in the merchant portal under Privacy requests."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except Exception:
        logger.exception("Could not e-mail merchant %s about privacy request %s", merchant.pk, request.pk)

"""A shopper's personal data redacted everywhere we hold it (issue #22 item 5), keeping the money.

What is personal here (docs/privacy.md): the order's `customer_email`; raw inbound bodies that name
the shopper or their orders (platform order payloads carry e-mail, names, addresses, phone, IP);
outbound event bodies and the channel's reply excerpt when they name the shopper; the test Stripe's
`receipt_email`. Orders, bags, lines, refunds, transfers and the refund audit trail stay: they are
financial records, and after this they hold no contact detail of the shopper.

Used by the `erase_shopper` command, the admin's erasure action, and Shopify's `customers/redact`
and `shop/redact` (platforms.privacy.compliance). Idempotent: a second run finds nothing to change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications.models import WebhookDelivery, WebhookEvent
from platforms.models import InboundEvent, Merchant
from platforms.privacy.ingest import STATUSES_NEEDING_BODY, redacted_fields
from refunds.models import Bag, Order
from stripe_sandbox.models import SandboxPaymentIntent

ERASED_OUTCOME_NOTE = "Body erased at a privacy request before it was processed; replay impossible."


def email_sha256(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest() if email.strip() else ""


@dataclass
class ErasureResult:
    orders: int = 0
    inbound_events: int = 0
    outbound_events: int = 0
    deliveries: int = 0
    payment_intents: int = 0
    order_ids: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.orders} order(s) without the shopper's e-mail, {self.inbound_events} inbound event(s) "
            f"redacted, {self.outbound_events} outbound event body(ies) and {self.deliveries} reply excerpt(s) "
            f"cleared, {self.payment_intents} payment intent receipt e-mail(s) cleared."
        )


def shopper_erase(
    *,
    email: str = "",
    order_ids: tuple[int, ...] = (),
    merchant: Merchant | None = None,
    external_order_ids: tuple[str, ...] = (),
) -> ErasureResult:
    """Redact one shopper's personal data: the orders with this e-mail (within `merchant`'s bags when
    given), our orders `order_ids`, and the merchant's platform orders `external_order_ids`."""
    email = email.strip()
    external_order_ids = tuple(str(i) for i in external_order_ids if str(i))
    orders = Order.objects.none()
    if email:
        by_email = Order.objects.filter(customer_email__iexact=email)
        orders = orders | (by_email.filter(bags__merchant=merchant) if merchant is not None else by_email)
    if order_ids:
        orders = orders | Order.objects.filter(pk__in=order_ids)
    if merchant is not None and external_order_ids:
        orders = orders | Order.objects.filter(bags__merchant=merchant, bags__external_id__in=external_order_ids)
    result = ErasureResult()
    with transaction.atomic():
        order_pks = sorted(set(orders.values_list("pk", flat=True)))
        result.order_ids = order_pks
        result.orders = Order.objects.filter(pk__in=order_pks).exclude(customer_email="").update(customer_email="")
        bags = Bag.objects.filter(order_id__in=order_pks).exclude(external_id=None)
        platform_orders = [
            (merchant_id, str(ext)) for merchant_id, ext in bags.values_list("merchant_id", "external_id") if ext
        ]
        if merchant is not None:
            platform_orders += [(merchant.pk, ext) for ext in external_order_ids]
        result.inbound_events = _inbound_events_erase(email, platform_orders)
        result.outbound_events, result.deliveries = _outbound_erase(email, order_pks)
        if email:
            result.payment_intents = SandboxPaymentIntent.objects.filter(receipt_email__iexact=email).update(
                receipt_email=""
            )
    return result


def _inbound_events_erase(email: str, platform_orders: list[tuple[int, str]]) -> int:
    match = Q(pk__in=[])
    if email:
        match |= Q(body__icontains=email)
    for merchant_id, external_id in set(platform_orders):
        # Events still waiting name their order in `order_id`; settled ones only in the body, where
        # the id is matched as a JSON value ("id": 450789469 or "450789469").
        scoped = Q(connection__merchant_id=merchant_id)
        match |= scoped & (
            Q(order_id=external_id)
            | Q(body__contains=f'"{external_id}"')
            | Q(body__regex=rf":\s*{_regex_literal(external_id)}\s*[,}}\]]")
        )
    return _redact_all(InboundEvent.objects.filter(match))


def _regex_literal(value: str) -> str:
    return "".join(f"\\{c}" if not c.isalnum() else c for c in value)


def _outbound_erase(email: str, order_pks: list[int]) -> tuple[int, int]:
    events = WebhookEvent.objects.filter(order_id__in=order_pks)
    named = events.filter(body__icontains=email).exclude(body="") if email else events.none()
    outbound = named.update(body="")
    deliveries = (
        WebhookDelivery.objects.filter(event__order_id__in=order_pks)
        .exclude(last_reply_excerpt="")
        .update(last_reply_excerpt="", date_last_modified=timezone.now())
    )
    return outbound, deliveries


def merchant_customer_data_erase(merchant: Merchant) -> ErasureResult:
    """shop/redact: every shopper's personal data of the merchant's orders, and every raw body its
    store sent us."""
    order_pks = tuple(Order.objects.filter(bags__merchant=merchant).values_list("pk", flat=True).distinct())
    result = shopper_erase(order_ids=order_pks)
    result.inbound_events += _redact_all(InboundEvent.objects.filter(connection__merchant=merchant))
    return result


def _redact_all(events) -> int:
    count = 0
    for event in events.filter(redacted_at__isnull=True).only("pk", "status", "outcome"):
        fields = redacted_fields()
        if event.status in STATUSES_NEEDING_BODY:
            fields.update(status=InboundEvent.Status.IGNORED, outcome=f"{event.outcome}\n{ERASED_OUTCOME_NOTE}".strip())
            fields.update(next_attempt_at=None, awaiting_since=None)
        count += InboundEvent.objects.filter(pk=event.pk).update(**fields)
    return count

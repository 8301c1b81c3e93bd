"""Salesforce Commerce Cloud (B2C): no refund concept, no webhooks (spec section 4, seed 000).

Rules (seed 000, "Sales Force Commerce Cloud"):
- Option 1 (Merchant.sfcc_refund_mode CANCEL_AS_REFUND): the merchant marks the order cancelled;
  `platforms.services.platform_orders_poll` reads orders modified since the last poll, and an order with status
  `cancelled` is a refund of everything still refundable on the bag, `cancel:<orderNo>`.
- Option 2 (MANUAL_NOTICE): refunds come only from the merchant's notice; nothing automatic, ever.

The stored event body is the order exactly as the Orders API returned it.
Readings of ⚠️/❓ items: order fields `orderNo`, `status`, `currency`, `creationDate`,
`productItems[] {itemId, quantity, basePrice, productId}`, `productSubTotal`, `shippingTotal`,
`taxTotal` (SCAPI Order); status values lower-case as in spec 4.2.
"""

from __future__ import annotations

from collections.abc import Mapping

from platforms.adapters.base import (
    OrderLine,
    OrderState,
    PlatformDataInvalid,
    RefundDecision,
    SignatureInvalid,
    WebhookEnvelope,
    cancellation_refund,
    parse_datetime,
    parse_json,
    to_minor_units,
)
from platforms.models import Platform, SfccRefundMode
from violet_refunds.money import AmountParts

CANCELLED = "cancelled"
POLL_TOPIC = "poll/order_cancelled"


def poll_event_id(connection, order_no: str) -> str:
    """One event per cancelled order and connection: a re-poll of the same cancellation is a duplicate."""
    return f"{connection.public_id}:{order_no}:{CANCELLED}"


class SfccAdapter:
    platform = Platform.SFCC
    receives_webhooks = False

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        raise SignatureInvalid("Salesforce Commerce Cloud sends no webhooks; its orders are polled.")

    def order_state(self, event) -> OrderState:
        return self.state_from_order(parse_json(event.body), topic=event.topic)

    def state_from_order(self, order: Mapping, *, topic: str = POLL_TOPIC) -> OrderState:
        order_no = str(order.get("orderNo") or "")
        if not order_no:
            raise PlatformDataInvalid("SFCC order without orderNo")
        currency = str(order.get("currency") or "").upper()
        if not currency:
            raise PlatformDataInvalid(f"SFCC order {order_no} has no currency")

        def money(value) -> int:
            return to_minor_units(value, currency, round_half_up=True)

        lines = tuple(
            OrderLine(
                external_id=str(item.get("itemId")),
                quantity=int(item.get("quantity") or 0),
                unit_price=money(item.get("basePrice")),
                sku=str(item.get("productId") or ""),
            )
            for item in order.get("productItems") or []
            if isinstance(item, Mapping)
        )
        status = str(order.get("status") or "").lower()
        return OrderState(
            platform=self.platform,
            order_id=order_no,
            topic=topic,
            currency=currency,
            status=status,
            payment_status=str(order.get("paymentStatus") or ""),
            cancelled=status == CANCELLED,
            fulfilled=order.get("shippingStatus") == "shipped",
            placed_at=parse_datetime(order.get("creationDate")),
            totals=AmountParts(
                sub_total=money(order.get("productSubTotal")),
                shipping=money(order.get("shippingTotal")),
                tax=money(order.get("taxTotal")),
            ),
            lines=lines,
        )

    def refund_decision(self, state: OrderState, bag) -> RefundDecision:
        if bag.merchant.sfcc_refund_mode != SfccRefundMode.CANCEL_AS_REFUND:
            return RefundDecision(
                ignored_reason="SFCC merchant uses Option 2 (manual refund notices): no automatic refunds."
            )
        if state.cancelled:
            return RefundDecision(
                refunds=(
                    cancellation_refund(bag, reason="SFCC order cancelled: treated as a refund (seed 000, Option 1)."),
                )
            )
        return RefundDecision(ignored_reason=f"SFCC order status {state.status or 'unknown'} is not a cancellation.")

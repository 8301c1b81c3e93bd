"""Salesforce Commerce Cloud (B2C): no refund concept, no webhooks (spec section 4, seed 000).

Rules (seed 000, "Sales Force Commerce Cloud"):
- Option 1 (Merchant.sfcc_refund_mode CANCEL_AS_REFUND): the merchant marks the order cancelled;
  `platforms.services.platform_orders_poll` asks this adapter (`connection_poll`) to read the orders
  modified since the last poll (platforms.clients.sfcc), and an order with status
  `cancelled` is a refund of everything still refundable on the bag, `cancel:<orderNo>`.
- Option 2 (MANUAL_NOTICE): refunds come only from the merchant's notice; nothing automatic, ever.
- Order management system (ORDER_MANAGEMENT, issue #25): the merchant refunds in its OMS; platforms.oms
  discovers each refund document (Salesforce Order Management: a credit memo) and stores it as an
  event of topic OMS_TOPIC, whose state the OMS adapter reads. Such a merchant is never polled for
  Option 1 cancellations (a cancellation SOM turns into a credit memo is that one refund), and its
  parity check reads the OMS.

The stored event body is the order exactly as the Orders API returned it.
Readings of ⚠️/❓ items: order fields `orderNo`, `status`, `currency`, `creationDate`,
`productItems[] {itemId, quantity, basePrice, productId}`, `productSubTotal`, `shippingTotal`,
`taxTotal` (SCAPI Order); status values lower-case as in spec 4.2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from django.conf import settings

from platforms import selectors
from platforms.adapters.base import (
    NO_WEBHOOKS,
    NO_WRITES,
    PARITY_TOPIC,
    EventSink,
    OrderLine,
    OrderState,
    PlatformDataInvalid,
    PollResult,
    RefundDecision,
    SignatureInvalid,
    WebhookEnvelope,
    cancellation_refund,
    parse_datetime,
    parse_json,
    to_minor_units,
)
from platforms.clients.base import ConnectionMisconfigured, PlatformClientError
from platforms.clients.sfcc import SfccClient
from platforms.models import OmsConnection, Platform, SfccRefundMode, StoreConnection
from platforms.oms import get_oms_adapter
from platforms.oms.base import OMS_TOPIC
from violet_refunds.money import AmountParts

CANCELLED = "cancelled"
POLL_TOPIC = "poll/order_cancelled"
# Polling windows: a store's first poll looks back SFCC_POLL_FIRST_LOOKBACK_SECONDS; later polls
# overlap the previous one a little (clock skew between us and SFCC; duplicates are deduplicated).
# One window covers at most MAX_POLL_WINDOW so the Orders API's 10,000-row paging window is never
# reached; a poll reads windows one after the other until it reaches now (a new store, or catching up
# after an outage), at most SFCC_POLL_MAX_WINDOWS_PER_RUN of them; the next run goes on from there.
POLL_OVERLAP = timedelta(minutes=5)
MAX_POLL_WINDOW = timedelta(hours=6)


def first_poll_lookback() -> timedelta:
    return timedelta(seconds=settings.SFCC_POLL_FIRST_LOOKBACK_SECONDS)


def poll_windows(cursor: datetime | None, now: datetime, *, max_windows: int) -> list[tuple[datetime, datetime]]:
    """The windows one poll reads: from the cursor (minus the overlap; now minus the first lookback
    for a new store) up to now, each at most MAX_POLL_WINDOW, at most `max_windows`."""
    start = cursor - POLL_OVERLAP if cursor else now - first_poll_lookback()
    windows: list[tuple[datetime, datetime]] = []
    while len(windows) < max(max_windows, 1):
        end = min(now, start + MAX_POLL_WINDOW)
        windows.append((start, end))
        if end >= now:
            break
        start = end
    return windows


def poll_event_id(connection, order_no: str) -> str:
    """One event per cancelled order and connection: a re-poll of the same cancellation is a duplicate."""
    return f"{connection.public_id}:{order_no}:{CANCELLED}"


class SfccAdapter:
    platform = Platform.SFCC
    receives_webhooks = False
    polls_orders = True
    # Commerce Cloud reports no refunds: its orders are polled (issue #24: nothing to subscribe).
    subscriptions = NO_WEBHOOKS
    # Forwarding (issue 14): B2C Commerce has no refund object or refund write API (spec 4.2), in
    # both refund modes: the merchant mirrors a channel refund by hand.
    capabilities = NO_WRITES

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        raise SignatureInvalid("Salesforce Commerce Cloud sends no webhooks; its orders are polled.")

    def connections_to_poll(self) -> Iterable[StoreConnection]:
        return selectors.sfcc_connections_to_poll()

    def connection_poll(self, connection: StoreConnection, *, now: datetime, ingest: EventSink) -> PollResult:
        """Cancelled orders modified since the cursor become events (only orders placed through the
        network: the merchant's own orders are not ours), window after window up to now. A failure
        after some windows were read keeps their progress (`polled_until` with `error`); a failure
        in the first window raises. The caller moves the cursor."""
        merchant = connection.merchant
        seen = created = 0
        polled_until: datetime | None = None
        client = SfccClient.from_connection(connection)
        windows = poll_windows(connection.last_polled_at, now, max_windows=settings.SFCC_POLL_MAX_WINDOWS_PER_RUN)
        for window_start, window_end in windows:
            try:
                orders = list(client.iter_orders_modified(modified_from=window_start, modified_to=window_end))
            except PlatformClientError as exc:
                if polled_until is None:
                    raise
                return PollResult(
                    connection_id=connection.pk,
                    orders_seen=seen,
                    events_created=created,
                    polled_until=polled_until,
                    error=exc.message,
                )
            for order in orders:
                seen += 1
                order_no = str(order.get("orderNo") or "")
                if str(order.get("status") or "").lower() != CANCELLED or not order_no:
                    continue
                if selectors.bag_for_platform_order(merchant, [order_no]) is None:
                    continue
                envelope = WebhookEnvelope(
                    event_id=poll_event_id(connection, order_no), topic=POLL_TOPIC, order_id=order_no
                )
                created += int(ingest(connection, envelope, json.dumps(order, default=str, sort_keys=True)))
            polled_until = window_end
        return PollResult(
            connection_id=connection.pk, orders_seen=seen, events_created=created, polled_until=polled_until
        )

    def read_order_state(self, connection: StoreConnection, order_id: str) -> OrderState:
        """Parity check: the order as the Orders API shows it now (a cancellation the poll missed);
        for an OMS merchant, every refund its OMS holds for the order."""
        if connection.merchant.sfcc_refund_mode == SfccRefundMode.ORDER_MANAGEMENT:
            oms = OmsConnection.objects.filter(
                merchant_id=connection.merchant_id, status=OmsConnection.Status.CONNECTED
            ).first()
            oms_adapter = get_oms_adapter(oms.system) if oms else None
            if oms is None or oms_adapter is None:
                raise ConnectionMisconfigured(
                    f"{connection.merchant} refunds in its order management system, which is not connected.",
                    platform=self.platform,
                )
            return oms_adapter.order_refunds_read(oms, order_id, topic=PARITY_TOPIC)
        order = SfccClient.from_connection(connection).get_order(order_id)
        return self.state_from_order(order, topic=PARITY_TOPIC)

    def order_state(self, event) -> OrderState:
        if event.topic == OMS_TOPIC:
            body = parse_json(event.body)
            oms_adapter = get_oms_adapter(str(body.get("system") or ""))
            if oms_adapter is None:
                raise PlatformDataInvalid(f"OMS event of an unknown system {str(body.get('system'))[:40]!r}")
            return oms_adapter.order_state_from_body(body, merchant=event.connection.merchant, topic=event.topic)
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
        mode = bag.merchant.sfcc_refund_mode
        if mode == SfccRefundMode.ORDER_MANAGEMENT:
            return oms_refund_decision(state, bag)
        if state.topic == OMS_TOPIC:
            return RefundDecision(
                ignored_reason="A refund from the order management system, but the SFCC merchant no longer uses it."
            )
        if mode != SfccRefundMode.CANCEL_AS_REFUND:
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


PRODUCT_LINE_PREFIX = "product:"


def oms_refund_decision(state: OrderState, bag) -> RefundDecision:
    """An OMS merchant: the refunds its OMS holds (one per refund document), their product lines
    matched to the bag's lines by the storefront product id (OrderSku.sku_id). A cancellation seen
    on the storefront is not a refund here: the OMS's credit memo for it is."""
    if not state.refunds:
        if state.cancelled:
            return RefundDecision(
                ignored_reason="SFCC merchant uses its order management system: a cancellation becomes a "
                "refund only through the OMS's refund document."
            )
        return RefundDecision(ignored_reason="The order management system holds no refund for this order.")
    skus = list(bag.skus.all())
    refunds = []
    for refund in state.refunds:
        lines, used = [], set()
        for line in refund.lines:
            codes = line.line_item_external_id.removeprefix(PRODUCT_LINE_PREFIX).split("|")
            sku = next((s for s in skus if s.sku_id in codes and s.external_id and s.pk not in used), None)
            if sku is None:
                sku = next((s for s in skus if s.external_id in codes and s.pk not in used), None)
            if sku is None:
                continue  # the split (parts) stays exact; only the line's restock detail is lost
            used.add(sku.pk)
            # ⚠️ A credit memo line has no quantity: the line's amount over the unit price.
            quantity = round((line.amount or 0) / sku.price) if sku.price else 1
            quantity = min(max(quantity, 1), sku.quantity)
            lines.append(replace(line, line_item_external_id=sku.external_id, quantity=quantity))
        refunds.append(replace(refund, lines=tuple(lines)))
    return RefundDecision(refunds=tuple(refunds))

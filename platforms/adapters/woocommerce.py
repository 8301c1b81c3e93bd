"""WooCommerce: `order.updated` webhooks carrying the whole order (docs/platforms.md 6.1, seed 000).

Rules:
- WooCommerce has no refund topic: a refund shows up as `order.updated` whose `refunds[]` lists it
  as `{id, reason, total}`. Every listed refund is recorded under its refund id, whatever the
  order status (a partial refund leaves the status alone). Which lines, how much shipping and tax
  it returned is read from the REST API (`orders/{id}/refunds/{refund_id}`), once: refunds the bag
  already has are not read again. A store connected without API credentials still gets its
  refunds, by amount (divided pro rata), with a warning in the log.
- Status `cancelled`, and status `refunded` with no refund detail, mean a refund of everything still
  refundable on the bag, external id `cancel:<order id>` (shared, so both never refund twice;
  recorded after the listed refunds, so it only takes what they left). Setting `refunded` by hand
  makes WooCommerce create a refund of the remainder itself, which then simply is the listed refund.
- Money moves through the network, not WooCommerce: a refund is recorded whether or not
  WooCommerce's own gateway returned anything (`refunded_payment`).

Authenticity: `X-WC-Webhook-Signature` = base64(HMAC-SHA256(webhook secret, raw body)), compared in
constant time before the body is parsed (WooCommerce keys with the secret after
`wp_specialchars_decode`, so the secret must hold no HTML entities; ours are URL-safe tokens). The
unsigned `webhook_id=<id>` ping WooCommerce sends when a webhook is saved is answered 200 and stored
nowhere (`is_setup_ping`), so the merchant's setup does not report an error.

Dedupe ⚠️: `X-WC-Webhook-Delivery-ID` is `wp_hash(webhook id . current unix second)`, so two
different deliveries of one webhook in the same second (a bulk status change) share it. The event
id is therefore `<delivery id>:<sha256 of the body>`: a re-sent delivery is a duplicate, two orders
in one second are two events. WooCommerce documents no retries; a refund seen again under another
delivery records nothing thanks to (bag, external_id).

Readings of ⚠️/❓ items, kept here:
- `refunds[].total` is negative in WooCommerce's REST code (`'-' . amount`); absolute values are used,
  as for the refund's negative line quantities and totals.
- A refund line names the order line it refunds in its `_refunded_item_id` meta entry.
- Fee lines are refunded as sub_total; their tax as tax.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping

from platforms import selectors
from platforms.adapters.base import (
    PARITY_TOPIC,
    CancelRequest,
    Capabilities,
    Delivery,
    EventIgnored,
    ForwardRequest,
    OrderLine,
    OrderState,
    OrderUnknown,
    PayloadMalformed,
    PlatformDataInvalid,
    PlatformRefund,
    RefundDecision,
    RefundLine,
    SignatureInvalid,
    SubscriptionPlan,
    WebhookEnvelope,
    cancellation_refund,
    explicit_refunds_with_money,
    parse_datetime,
    parse_json,
    to_minor_units,
)
from platforms.clients.base import ConnectionMisconfigured, PlatformNotFound
from platforms.clients.woocommerce import WooCommerceClient
from platforms.models import Platform
from violet_refunds.money import AmountParts, format_major

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
DELIVERY_ID_HEADER = "X-WC-Webhook-Delivery-ID"
TOPIC_HEADER = "X-WC-Webhook-Topic"
RESOURCE_HEADER = "X-WC-Webhook-Resource"
EVENT_HEADER = "X-WC-Webhook-Event"

TOPIC_ORDER_UPDATED = "order.updated"
STATUS_CANCELLED = "cancelled"

# Issue #24: registered per store with `/wp-json/wc/v3/webhooks` (platforms/subscriptions/
# woocommerce.py), signed with the connection's webhook secret, status `active`. WooCommerce has no
# app and so no uninstall topic: a revoked REST key answers 401, which marks the connection INVALID.
SUBSCRIPTIONS = SubscriptionPlan(
    delivery=Delivery.PER_CONNECTION,
    topics=(TOPIC_ORDER_UPDATED,),
    registration="REST /wp-json/wc/v3/webhooks (GET, POST, PUT, DELETE)",
)
STATUS_REFUNDED = "refunded"
REFUND_WHAT_IS_LEFT_STATUSES = (STATUS_CANCELLED, STATUS_REFUNDED)
REFUNDED_ITEM_META_KEY = "_refunded_item_id"
# Headers kept with a stored event (platforms.privacy.ingest); never the signature.
STORED_HEADERS = (
    "X-WC-Webhook-Source",
    TOPIC_HEADER,
    RESOURCE_HEADER,
    EVENT_HEADER,
    "X-WC-Webhook-ID",
    DELIVERY_ID_HEADER,
)
_PING_BODY = re.compile(rb"^webhook_id=\d{1,20}$")


def woocommerce_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _abs_money(value, currency: str) -> int:
    return abs(to_minor_units(value, currency))


def _quantity(value) -> int:
    try:
        return abs(int(value or 0))
    except (TypeError, ValueError):
        return 0


def _refunded_item_id(item: Mapping) -> str:
    for meta in item.get("meta_data") or []:
        if (
            isinstance(meta, Mapping)
            and meta.get("key") == REFUNDED_ITEM_META_KEY
            and meta.get("value") not in (None, "")
        ):
            return str(meta["value"])
    return ""


def _mappings(value) -> list[Mapping]:
    return [item for item in value or [] if isinstance(item, Mapping)] if isinstance(value, list) else []


def parse_refund_detail(refund: Mapping, *, currency: str) -> PlatformRefund:
    """One refund from `orders/{id}/refunds/{refund_id}` in minor units."""
    if refund.get("id") in (None, ""):
        raise PlatformDataInvalid("WooCommerce refund without an id")
    lines, sub_total, shipping, tax, shipping_tax = [], 0, 0, 0, 0
    for item in _mappings(refund.get("line_items")):
        line_total = _abs_money(item.get("total"), currency)
        sub_total += line_total
        tax += _abs_money(item.get("total_tax"), currency)
        order_line_id, quantity = _refunded_item_id(item), _quantity(item.get("quantity"))
        if order_line_id and quantity > 0:
            lines.append(RefundLine(order_line_id, quantity, line_total))
    for item in _mappings(refund.get("shipping_lines")):
        shipping += _abs_money(item.get("total"), currency)
        shipping_tax += _abs_money(item.get("total_tax"), currency)
    for item in _mappings(refund.get("fee_lines")):
        sub_total += _abs_money(item.get("total"), currency)
        tax += _abs_money(item.get("total_tax"), currency)
    tax += shipping_tax
    # A refund "by amount" names no line, shipping or tax: its money is divided pro rata.
    parts = AmountParts(sub_total, shipping, tax) if sub_total or shipping or tax else None
    return PlatformRefund(
        external_id=str(refund["id"]),
        amount=_abs_money(refund.get("amount"), currency),
        parts=parts,
        shipping_tax=shipping_tax,
        lines=tuple(lines),
        reason=str(refund.get("reason") or "")[:255],
        created_at=parse_datetime(refund.get("date_created_gmt") or refund.get("date_created")),
    )


class WooCommerceAdapter:
    """Forwarding a channel refund (issue 14): `POST orders/{id}/refunds` with `api_refund: false`
    (WooCommerce records the refund and must not ask its gateway to move money: the network does),
    `api_restock` as the channel asked ⚠️ (WooCommerce 5.x+), the refunded lines with quantity and
    refund_total, and our marker as `reason`. No idempotency key: sent once, looked up by reason."""

    platform = Platform.WOOCOMMERCE
    receives_webhooks = True
    polls_orders = False
    subscriptions = SUBSCRIPTIONS
    stored_headers = STORED_HEADERS
    capabilities = Capabilities(
        can_refund=True,
        partial=True,
        can_cancel=True,
        write_credentials=("store_url", "consumer_key", "consumer_secret"),
    )

    def order_cancel(self, connection, request: CancelRequest) -> None:
        """`PUT orders/{id}` with status `cancelled` (setting a status: a repeat is harmless)."""
        WooCommerceClient.from_connection(connection).order_update(request.order_id, {"status": "cancelled"})

    def order_cancelled(self, connection, order_id: str) -> bool:
        """The order's `status` is `cancelled`."""
        return WooCommerceClient.from_connection(connection).get_order(order_id).get("status") == "cancelled"

    def refund_find(self, connection, request: ForwardRequest) -> str | None:
        for refund in WooCommerceClient.from_connection(connection).list_refunds(request.order_id):
            if request.marker in str(refund.get("reason") or ""):
                return str(refund.get("id"))
        return None

    def refund_create(self, connection, request: ForwardRequest, *, before_send) -> str:
        body: dict = {
            "amount": format_major(request.amount, request.currency),
            "reason": request.note,
            "api_refund": False,
            "api_restock": request.restock,
        }
        if request.lines:
            body["line_items"] = [
                {
                    "id": int(line.line_item_external_id)
                    if line.line_item_external_id.isdigit()
                    else line.line_item_external_id,
                    "quantity": line.quantity,
                    "refund_total": format_major(line.amount, request.currency),
                }
                for line in request.lines
            ]
        before_send()
        created = WooCommerceClient.from_connection(connection).refund_create(request.order_id, body)
        if created.get("id") in (None, ""):
            raise PlatformDataInvalid("WooCommerce answered the refund create without a refund id.")
        return str(created["id"])

    def is_setup_ping(self, *, body: bytes, headers: Mapping[str, str]) -> bool:
        """WooCommerce's unsigned `webhook_id=<id>` test delivery, sent when a webhook is saved."""
        return not headers.get(SIGNATURE_HEADER) and bool(_PING_BODY.match(body.strip()))

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        signature = (headers.get(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise SignatureInvalid(f"Missing {SIGNATURE_HEADER} header.")
        if not secret or not hmac.compare_digest(woocommerce_signature(secret, body).encode(), signature.encode()):
            raise SignatureInvalid("The signature does not match the body.")
        payload = parse_json(body)
        delivery_id = (headers.get(DELIVERY_ID_HEADER) or "").strip()
        if not delivery_id:
            raise PayloadMalformed(f"Missing {DELIVERY_ID_HEADER} header.")
        topic = (headers.get(TOPIC_HEADER) or "").strip()
        if not topic and headers.get(RESOURCE_HEADER) and headers.get(EVENT_HEADER):
            topic = f"{headers[RESOURCE_HEADER].strip()}.{headers[EVENT_HEADER].strip()}"
        if not topic:
            raise PayloadMalformed(f"Missing {TOPIC_HEADER} header.")
        order_id = payload.get("id")
        return WebhookEnvelope(
            event_id=f"{delivery_id}:{hashlib.sha256(body).hexdigest()}",
            topic=topic,
            order_id=str(order_id) if isinstance(order_id, int | str) and not isinstance(order_id, bool) else "",
        )

    def order_state(self, event) -> OrderState:
        if event.topic != TOPIC_ORDER_UPDATED:
            raise EventIgnored(f"WooCommerce topic {event.topic!r} carries no refund signal.")
        order = parse_json(event.body)
        if order.get("id") in (None, ""):
            raise PlatformDataInvalid("order.updated without an order id")
        order_id = str(order["id"])
        refund_ids = [
            str(entry["id"]) for entry in _mappings(order.get("refunds")) if entry.get("id") not in (None, "")
        ]
        details: dict[str, Mapping | None] = {}
        if refund_ids:
            merchant = event.connection.merchant
            # Checked before any API call: the store's own orders fire the same webhooks.
            bag = selectors.bag_for_platform_order(merchant, [order_id])
            if bag is None:
                raise OrderUnknown(f"Order {order_id} is not (yet) a bag of {merchant}.", order_ids=(order_id,))
            unrecorded = [rid for rid in refund_ids if selectors.refund_by_external_id(bag, rid) is None]
            if unrecorded:
                details = self._read_refunds(event.connection, order_id, unrecorded)
        return self.state_from_order(
            order, fallback_currency=event.connection.merchant.currency, topic=event.topic, refund_details=details
        )

    def read_order_state(self, connection, order_id: str) -> OrderState:
        """Parity check: `GET orders/{id}` (the same order an `order.updated` body carries), and the
        detail of each listed refund the bag does not have yet."""
        order = WooCommerceClient.from_connection(connection).get_order(order_id)
        refund_ids = [
            str(entry["id"]) for entry in _mappings(order.get("refunds")) if entry.get("id") not in (None, "")
        ]
        bag = selectors.bag_for_platform_order(connection.merchant, [order_id])
        unrecorded = [rid for rid in refund_ids if bag is None or selectors.refund_by_external_id(bag, rid) is None]
        details = self._read_refunds(connection, order_id, unrecorded) if unrecorded else {}
        return self.state_from_order(
            order, fallback_currency=connection.merchant.currency, topic=PARITY_TOPIC, refund_details=details
        )

    def _read_refunds(self, connection, order_id: str, refund_ids: list[str]) -> dict[str, Mapping | None]:
        """Refund id -> its detail, or None when WooCommerce no longer has it (deleted since)."""
        try:
            client = WooCommerceClient.from_connection(connection)
        except ConnectionMisconfigured as exc:
            logger.warning("WooCommerce refunds of order %s recorded by amount only: %s", order_id, exc.message)
            return {}
        details: dict[str, Mapping | None] = {}
        for refund_id in refund_ids:
            try:
                details[refund_id] = client.get_order_refund(order_id, refund_id)
            except PlatformNotFound:
                logger.warning("WooCommerce refund %s of order %s no longer exists; not recorded", refund_id, order_id)
                details[refund_id] = None
        return details

    def state_from_order(
        self,
        order: Mapping,
        *,
        fallback_currency: str,
        topic: str = TOPIC_ORDER_UPDATED,
        refund_details: Mapping[str, Mapping | None] | None = None,
    ) -> OrderState:
        """The order as the webhook body (or GET orders/{id}) shows it; `refund_details` by refund id."""
        if order.get("id") in (None, ""):
            raise PlatformDataInvalid("WooCommerce order without an id")
        currency = str(order.get("currency") or fallback_currency).upper()
        refund_details = refund_details or {}
        refunds = []
        for entry in _mappings(order.get("refunds")):
            refund_id = str(entry.get("id") or "")
            if not refund_id:
                continue
            if refund_id in refund_details:
                detail = refund_details[refund_id]
                if detail is not None:
                    refunds.append(parse_refund_detail(detail, currency=currency))
                continue
            refunds.append(
                PlatformRefund(
                    external_id=refund_id,
                    amount=_abs_money(entry.get("total"), currency),
                    reason=str(entry.get("reason") or "")[:255],
                )
            )
        lines = tuple(
            OrderLine(
                external_id=str(item.get("id")),
                quantity=_quantity(item.get("quantity")),
                unit_price=to_minor_units(item.get("price"), currency, round_half_up=True),
                sku=str(item.get("sku") or ""),
            )
            for item in _mappings(order.get("line_items"))
        )
        total = to_minor_units(order.get("total"), currency, round_half_up=True)
        shipping = to_minor_units(order.get("shipping_total"), currency, round_half_up=True)
        tax = to_minor_units(order.get("total_tax"), currency, round_half_up=True)
        status = str(order.get("status") or "")
        return OrderState(
            platform=self.platform,
            order_id=str(order["id"]),
            topic=topic,
            currency=currency,
            status=status,
            cancelled=status == STATUS_CANCELLED,
            fulfilled=status == "completed",
            placed_at=parse_datetime(order.get("date_created_gmt") or order.get("date_created")),
            totals=AmountParts(sub_total=max(total - shipping - tax, 0), shipping=shipping, tax=tax),
            lines=lines,
            refunds=tuple(refunds),
        )

    def refund_decision(self, state: OrderState, bag) -> RefundDecision:
        refunds, notes = explicit_refunds_with_money(state)
        implied = list(refunds)
        if state.status in REFUND_WHAT_IS_LEFT_STATUSES:
            implied.append(
                cancellation_refund(
                    bag, reason=f"WooCommerce order status {state.status}: refund of what is left (seed 000)."
                )
            )
        elif not implied:
            notes.insert(0, f"WooCommerce order status {state.status or 'unknown'} and no refund that returned money")
        return RefundDecision(refunds=tuple(implied), ignored_reason="; ".join(notes) + ("." if notes else ""))

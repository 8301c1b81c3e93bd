"""BigCommerce: `store/order/refund/created` and `store/order/statusUpdated` webhooks; the order and
its refunds are read from the API (docs/platforms.md section 5, violet-api.md section 8, seed 000).

Rules:
- Violet's merchant guide: "Always refund/cancel in BC admin"; the refund is flagged `offline`
  there, which is expected: BigCommerce only records it and the network refunds the shopper. So
  every refund BigCommerce shows is recorded under its refund id, offline or not; only payments
  the provider declined (`is_declined`) count as no money.
- Status Cancelled (5) means a refund of everything still refundable on the bag, external id
  `cancel:<order id>` (a cancellation is how a merchant gives everything back, and Violet's cancel
  flow issues a full refund). Status Refunded (4) gets the same: seed 000 makes "mark the order
  refunded" the merchant's whole job. Both share the one id, so cancelling and then marking
  refunded never refunds twice, and refunds BigCommerce already shows are recorded first, so the
  cancellation only takes what they left.
- Partially Refunded (14) reads the order again (a second chance for a lost refund/created); every
  other status change is ignored without calling the API, as are orders that are not ours.

Authenticity: BigCommerce signs nothing (spec 5.4). A hook is registered (`POST /v3/hooks`) with
`"headers": {"Authorization": "Bearer <StoreConnection.webhook_secret>"}`, which BigCommerce sends
back verbatim; it is compared in constant time. `Authorization` rather than a custom X- header
because the receiver never stores that header with the event, so the secret does not end up in
plain text in InboundEvent.headers. The payload's `producer` must name this connection's store.
Dedupe on `hash` (the same for every retry of one event; a digest of a payload that names the
store, so two stores' events do not collide).

Readings of ⚠️/❓ items, kept here:
- Money: V3 refund amounts are JSON numbers documented as "2 decimal place rounded" floats; they
  are rounded half up to the currency's minor unit so a float artefact never fails an event. V2
  order amounts are 4-decimal strings ("100.0000").
- Currency: the order's `currency_code` (what the shopper paid); multi-currency stores unverified.
- Parts: tax = `total_tax`, shipping = the SHIPPING and HANDLING items' `requested_amount` (taken
  as tax exclusive), sub_total = the rest of the money. A refund with ORDER, FEE or GIFT_WRAPPING
  items, or a negative `total_tax`, has no reliable split: its money is divided pro rata.
- PRODUCT items: `item_id` is the order product id (our OrderSku.external_id), `quantity` the units.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from platforms import selectors
from platforms.adapters.base import (
    LIFECYCLE_UNINSTALLED,
    PARITY_TOPIC,
    CancelRequest,
    Capabilities,
    Delivery,
    EventIgnored,
    ForwardRequest,
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
from platforms.clients.base import PlatformNotFound, PlatformRequestRejected
from platforms.clients.bigcommerce import BigCommerceClient
from platforms.models import Platform
from violet_refunds.money import AmountParts, format_major

# Registered on the hook as `"headers": {"Authorization": "Bearer <webhook secret>"}`.
SECRET_HEADER = "Authorization"
SECRET_SCHEME = "bearer"

SCOPE_REFUND_CREATED = "store/order/refund/created"
SCOPE_STATUS_UPDATED = "store/order/statusUpdated"
ORDER_SCOPES = (SCOPE_REFUND_CREATED, SCOPE_STATUS_UPDATED)
# The app was uninstalled from the store (a webhook; the app's uninstall callback is not routed here).
SCOPE_APP_UNINSTALLED = "store/app/uninstalled"

# Issue #24: registered per store with `/v3/hooks` (platforms/subscriptions/bigcommerce.py), each
# hook carrying `headers: {"Authorization": "Bearer <webhook secret>"}` (SECRET_HEADER above).
SUBSCRIPTIONS = SubscriptionPlan(
    delivery=Delivery.PER_CONNECTION,
    topics=(SCOPE_REFUND_CREATED, SCOPE_STATUS_UPDATED, SCOPE_APP_UNINSTALLED),
    registration="REST /v3/hooks (GET, POST, PUT, DELETE)",
)

# V2 order status ids (spec 5.3).
STATUS_NAMES = {
    0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded", 5: "Cancelled",
    6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup", 9: "Awaiting Shipment", 10: "Completed",
    11: "Awaiting Fulfillment", 12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded",
}  # fmt: skip
STATUS_REFUNDED = 4
STATUS_CANCELLED = 5
STATUS_PARTIALLY_REFUNDED = 14
FULFILLED_STATUSES = (2, 10)
# The merchant's way of saying "give everything that is left back" (see the rules above).
REFUND_WHAT_IS_LEFT_STATUSES = (STATUS_REFUNDED, STATUS_CANCELLED)
# Status changes worth reading the order and its refunds for.
REFUND_SIGNAL_STATUSES = (*REFUND_WHAT_IS_LEFT_STATUSES, STATUS_PARTIALLY_REFUNDED)

SHIPPING_ITEM_TYPES = ("SHIPPING", "HANDLING")
ITEMIZED_TYPES = ("PRODUCT", *SHIPPING_ITEM_TYPES)


def status_label(status_id: int | None) -> str:
    return f"{status_id} ({STATUS_NAMES.get(status_id, 'unknown')})"


def _int_or_none(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _bearer_token(value: str | None) -> str:
    scheme, _, token = (value or "").strip().partition(" ")
    return token.strip() if scheme.lower() == SECRET_SCHEME else ""


def _order_id_from_body(payload: Mapping) -> str:
    data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
    order_id = data.get("order_id") if data.get("type") == "transaction" else data.get("id")
    return str(order_id) if isinstance(order_id, int | str) and not isinstance(order_id, bool) else ""


def _money(value, currency: str) -> int:
    return to_minor_units(value, currency, round_half_up=True)


def _placed_at(value) -> datetime | None:
    """V2 dates are RFC 2822 ("Tue, 05 Mar 2019 21:44:36 +0000"); ISO-8601 is accepted too."""
    if isinstance(value, str) and "," in value:
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parse_datetime(value)


def parse_refund(refund: Mapping, *, currency: str) -> PlatformRefund:
    """One V3 refund (spec 5.2) in minor units."""
    if refund.get("id") in (None, ""):
        raise PlatformDataInvalid("BigCommerce refund without an id")
    payments = [p for p in refund.get("payments") or [] if isinstance(p, Mapping)]
    if payments:
        money = sum(_money(p.get("amount"), currency) for p in payments if not p.get("is_declined"))
    else:
        money = _money(refund.get("total_amount"), currency)

    items = [item for item in refund.get("items") or [] if isinstance(item, Mapping)]
    lines = []
    for item in items:
        quantity = _int_or_none(item.get("quantity")) or 0
        if item.get("item_type") == "PRODUCT" and item.get("item_id") not in (None, "") and quantity > 0:
            lines.append(RefundLine(str(item["item_id"]), quantity))
    shipping = sum(
        max(_money(item.get("requested_amount"), currency), 0)
        for item in items
        if item.get("item_type") in SHIPPING_ITEM_TYPES
    )
    tax = _money(refund.get("total_tax"), currency)
    parts = None
    itemized = bool(items) and all(item.get("item_type") in ITEMIZED_TYPES for item in items)
    if itemized and tax >= 0 and money - shipping - tax >= 0:
        parts = AmountParts(sub_total=money - shipping - tax, shipping=shipping, tax=tax)
    return PlatformRefund(
        external_id=str(refund["id"]),
        amount=money,
        parts=parts,
        lines=tuple(lines),
        reason=_refund_reason(refund, items)[:255],
        created_at=parse_datetime(refund.get("created")),
    )


def _refund_reason(refund: Mapping, items: list) -> str:
    """The refund's reason; a refund created through the API carries it on its items (our marker
    is there) ⚠️: whether BigCommerce copies it to the refund's own `reason` is not documented."""
    reason = str(refund.get("reason") or "")
    item_reasons = [str(item.get("reason")) for item in items if item.get("reason")]
    return " ".join([reason, *[r for r in item_reasons if r not in reason]]).strip()


# Forwarding a channel refund (issue 14, spec 5.6): a refund quote, then the refund, paid back with
# an offline method (`offline: true`, the "custom" provider when the quote offers it): BigCommerce
# records it and moves no money, which the network returns itself. The refund is one ORDER item of
# the refund's amount ⚠️: SHIPPING items need the order address id, and API refunds never restock
# anyway (spec 5.2), so the line detail would add nothing BigCommerce acts on.
OFFLINE_PROVIDER = "custom"
CANCELLED_STATUS_ID = 5


class BigCommerceAdapter:
    platform = Platform.BIGCOMMERCE
    receives_webhooks = True
    polls_orders = False
    subscriptions = SUBSCRIPTIONS
    capabilities = Capabilities(
        can_refund=True, partial=True, can_cancel=True, write_credentials=("store_hash", "access_token")
    )

    def order_cancel(self, connection, request: CancelRequest) -> None:
        """V2 order `status_id` 5, Cancelled (spec 5.3): setting a status, so a repeat is harmless."""
        BigCommerceClient.from_connection(connection).order_status_set(request.order_id, CANCELLED_STATUS_ID)

    def order_cancelled(self, connection, order_id: str) -> bool:
        """The V2 order's `status_id` is 5 (Cancelled)."""
        order = BigCommerceClient.from_connection(connection).get_order(order_id)
        return str(order.get("status_id")) == str(CANCELLED_STATUS_ID)

    def refund_find(self, connection, request: ForwardRequest) -> str | None:
        for refund in BigCommerceClient.from_connection(connection).get_order_refunds(request.order_id):
            items = [item for item in refund.get("items") or [] if isinstance(item, Mapping)]
            if request.marker in _refund_reason(refund, items):
                return str(refund.get("id"))
        return None

    def refund_create(self, connection, request: ForwardRequest, *, before_send) -> str:
        client = BigCommerceClient.from_connection(connection)
        items = [
            {
                "item_type": "ORDER",
                "item_id": _order_id_value(request.order_id),
                "amount": float(format_major(request.amount, request.currency)),
                "reason": request.note,
            }
        ]
        quote = client.refund_quote(request.order_id, items)
        method = _offline_method(quote)
        if method is None:
            raise PlatformRequestRejected(
                "BigCommerce offers no offline refund method for this order.", platform="BigCommerce", http_status=422
            )
        before_send()
        created = client.refund_create(
            request.order_id,
            {
                "items": items,
                "payments": [
                    {
                        "provider_id": method,
                        "amount": float(format_major(request.amount, request.currency)),
                        "offline": True,
                    }
                ],
            },
        )
        if created.get("id") in (None, ""):
            raise PlatformDataInvalid("BigCommerce answered the refund create without a refund id.")
        return str(created["id"])

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        presented = _bearer_token(headers.get(SECRET_HEADER))
        if not presented:
            raise SignatureInvalid(
                f"Missing {SECRET_HEADER}: Bearer <webhook secret> header (set in the BigCommerce hook's headers)."
            )
        if not secret or not hmac.compare_digest(presented.encode(), secret.encode()):
            raise SignatureInvalid("The webhook secret in the Authorization header does not match this connection.")
        payload = parse_json(body)
        event_hash = str(payload.get("hash") or "").strip()
        scope = str(payload.get("scope") or "").strip()
        if not event_hash or not scope:
            raise PayloadMalformed("BigCommerce webhooks carry `scope` and `hash`; one is missing.")
        if scope == SCOPE_APP_UNINSTALLED:
            return WebhookEnvelope(event_id=event_hash, topic=scope, lifecycle=LIFECYCLE_UNINSTALLED)
        return WebhookEnvelope(event_id=event_hash, topic=scope, order_id=_order_id_from_body(payload))

    def order_state(self, event) -> OrderState:
        payload = parse_json(event.body)
        scope = str(payload.get("scope") or event.topic)
        if scope not in ORDER_SCOPES:
            raise EventIgnored(f"BigCommerce scope {scope!r} carries no refund signal.")
        order_id = _order_id_from_body(payload)
        if not order_id:
            raise EventIgnored("The BigCommerce event names no order.")
        if scope == SCOPE_STATUS_UPDATED:
            status = (payload.get("data") or {}).get("status")
            new_status = _int_or_none(status.get("new_status_id")) if isinstance(status, Mapping) else None
            if new_status not in REFUND_SIGNAL_STATUSES:
                raise EventIgnored(f"BigCommerce order status changed to {status_label(new_status)}: no refund signal.")
        merchant = event.connection.merchant
        # Checked before any API call: the store's own orders fire the same webhooks.
        if selectors.bag_for_platform_order(merchant, [order_id]) is None:
            raise OrderUnknown(f"Order {order_id} is not (yet) a bag of {merchant}.", order_ids=(order_id,))
        client = BigCommerceClient.from_connection(event.connection)
        producer = str(payload.get("producer") or "")
        if producer and producer != f"stores/{client.store_hash}":
            raise EventIgnored(
                f"The event is from BigCommerce {producer}, but this connection is stores/{client.store_hash}."
            )
        try:
            order = client.get_order(order_id)
            refunds = client.get_order_refunds(order_id)
        except PlatformNotFound as exc:
            raise EventIgnored(f"BigCommerce has no order {order_id} in store {client.store_hash}.") from exc
        return self.state_from_api(order, refunds, fallback_currency=merchant.currency, topic=scope)

    def read_order_state(self, connection, order_id: str) -> OrderState:
        """Parity check: the order and its refunds as the API shows them now (what a webhook reads)."""
        client = BigCommerceClient.from_connection(connection)
        order = client.get_order(order_id)
        refunds = client.get_order_refunds(order_id)
        return self.state_from_api(order, refunds, fallback_currency=connection.merchant.currency, topic=PARITY_TOPIC)

    def state_from_api(
        self, order: Mapping, refunds: list[Mapping], *, fallback_currency: str, topic: str = ""
    ) -> OrderState:
        if order.get("id") in (None, ""):
            raise PlatformDataInvalid("BigCommerce order without an id")
        currency = str(order.get("currency_code") or order.get("default_currency_code") or fallback_currency).upper()
        status_id = _int_or_none(order.get("status_id"))
        return OrderState(
            platform=self.platform,
            order_id=str(order["id"]),
            topic=topic,
            currency=currency,
            status="" if status_id is None else str(status_id),
            payment_status=str(order.get("payment_status") or ""),
            cancelled=status_id == STATUS_CANCELLED,
            fulfilled=status_id in FULFILLED_STATUSES,
            placed_at=_placed_at(order.get("date_created")),
            totals=AmountParts(
                sub_total=_money(order.get("subtotal_ex_tax"), currency),
                shipping=_money(order.get("shipping_cost_ex_tax"), currency),
                tax=_money(order.get("total_tax"), currency),
            ),
            refunds=tuple(parse_refund(refund, currency=currency) for refund in refunds),
        )

    def refund_decision(self, state: OrderState, bag) -> RefundDecision:
        refunds, notes = explicit_refunds_with_money(state)
        implied = list(refunds)
        status_id = _int_or_none(state.status)
        if status_id in REFUND_WHAT_IS_LEFT_STATUSES:
            implied.append(
                cancellation_refund(
                    bag,
                    reason=(
                        f"BigCommerce order status {status_label(status_id)}: refund of what is left "
                        "(merchants refund/cancel in BigCommerce admin; the network refunds the shopper)."
                    ),
                )
            )
        elif not implied:
            notes.insert(0, f"BigCommerce order status {status_label(status_id)} and no refund that returned money")
        return RefundDecision(refunds=tuple(implied), ignored_reason="; ".join(notes) + ("." if notes else ""))


def _order_id_value(order_id: str) -> int | str:
    return int(order_id) if str(order_id).isdigit() else order_id


def _offline_method(quote: Mapping) -> str | None:
    """The offline provider the quote offers: "custom" if it does, else the first offline one that is
    not store credit (store credit would pay the shopper a second time, in the store)."""
    offered = []
    for option in quote.get("refund_methods") or []:
        for method in option if isinstance(option, list) else [option]:
            if isinstance(method, Mapping) and (method.get("offline") or method.get("offline_provider")):
                offered.append(str(method.get("provider_id") or ""))
    if OFFLINE_PROVIDER in offered:
        return OFFLINE_PROVIDER
    return next((p for p in offered if p and p != "storecredit"), None)

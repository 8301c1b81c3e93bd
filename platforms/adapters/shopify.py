"""Shopify: `refunds/create` and `orders/cancelled` webhooks (docs/platforms.md section 1, seed 000).

Rules:
- The signed `refunds/create` body is the refund: money = successful refund transactions; lines,
  shipping (refund shipping lines, or `shipping_refund` order adjustments before 2024-10) and tax
  from the same body.
- `orders/cancelled` with "Refund payments now" carries the refund(s) in `refunds[]`: the same
  refund ids as their `refunds/create` deliveries, so whichever arrives first records it.
- A cancellation without a refund ("Refund later") moves no money: ignored, with that reason.

Readings of ⚠️/❓ items, kept here:
- Dedupe id: `X-Shopify-Webhook-Id` (current "verify deliveries" page), else `X-Shopify-Event-Id`;
  both headers are stored with the event (spec open item 1).
- `order_adjustments[].amount` has a different sign in different examples: we take absolute values.
- `refund_shipping_lines[]` element shape is unknown: we read `subtotal_amount_set`/`amount_set`
  (or plain `amount`/`subtotal`) and `tax_amount_set`/`total_tax_set`, whichever is present.
- Several `refund_line_items[]` for one `line_item_id` (one per restock location) are one refunded
  line: quantities, subtotals and taxes are summed before the refund is validated.

Forwarding a channel refund (issue 14; REST Admin API Refund resource, shopify.dev
/docs/api/admin-rest/.../resources/refund): `POST orders/{id}/refunds/calculate.json`, then
`POST orders/{id}/refunds.json` with the refund lines (restock_type `return` when the channel asked
to restock, else `no_restock` ⚠️ `cancel` would be the type for unfulfilled lines), the shipping
amount, `notify` as the channel asked, our marker as `note`, and one `refund` transaction against
the parent transaction and gateway calculate suggested (Violet's orders are paid through Violet's
gateway, so Shopify records the refund without moving money). No idempotency key exists for
REST refunds: a create is sent once and looked up by its note before any resend.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import replace

from django.conf import settings
from django.utils.datastructures import CaseInsensitiveMapping

from platforms.adapters.base import (
    LIFECYCLE_UNINSTALLED,
    PARITY_TOPIC,
    CancelRequest,
    Capabilities,
    Delivery,
    EventIgnored,
    ForwardRequest,
    OrderLine,
    OrderState,
    PayloadMalformed,
    PlatformDataInvalid,
    PlatformRefund,
    RefundDecision,
    RefundLine,
    SignatureInvalid,
    SubscriptionPlan,
    WebhookEnvelope,
    explicit_refunds_with_money,
    parse_datetime,
    parse_json,
    to_minor_units,
)
from platforms.clients.base import PlatformRequestRejected
from platforms.clients.shopify import ShopifyClient
from platforms.models import Platform
from violet_refunds.money import AmountParts, format_major

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
EVENT_ID_HEADER = "X-Shopify-Event-Id"
SHOP_DOMAIN_HEADER = "X-Shopify-Shop-Domain"

TOPIC_REFUNDS_CREATE = "refunds/create"
TOPIC_APP_UNINSTALLED = "app/uninstalled"
# Mandatory compliance webhooks (shopify.dev "Privacy law compliance"): platforms.privacy.compliance.
COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
# Headers kept with a stored event (platforms.privacy.ingest); never the HMAC.
STORED_HEADERS = (
    TOPIC_HEADER,
    WEBHOOK_ID_HEADER,
    EVENT_ID_HEADER,
    SHOP_DOMAIN_HEADER,
    "X-Shopify-API-Version",
    "X-Shopify-Triggered-At",
)
TOPIC_ORDERS_CANCELLED = "orders/cancelled"
# orders/updated carries the same Order resource; reconciling it is harmless and catches refunds
# whose own refunds/create delivery was lost.
ORDER_TOPICS = (TOPIC_ORDERS_CANCELLED, "orders/updated")

TOPIC_APP_UNINSTALLED = "app/uninstalled"

# Issue #24: registered per shop with the GraphQL Admin API (platforms/subscriptions/shopify.py),
# delivered to the connection's URL. `orders/updated` is read when it arrives but not subscribed:
# it fires on every edit of every order (the hot path pays for each), and a refund whose
# refunds/create was lost is found by the parity check anyway. The compliance topics can only be
# set in the app's configuration (Partner Dashboard / shopify.app.toml `compliance_topics`): Shopify
# refuses them through the API.
SUBSCRIPTIONS = SubscriptionPlan(
    delivery=Delivery.PER_CONNECTION,
    topics=(TOPIC_REFUNDS_CREATE, TOPIC_ORDERS_CANCELLED, TOPIC_APP_UNINSTALLED),
    registration="GraphQL Admin API webhookSubscriptionCreate / webhookSubscriptionUpdate / webhookSubscriptionDelete",
    app_level_topics=("customers/data_request", "customers/redact", "shop/redact"),
    app_level_setup="Partner Dashboard > the app > Configuration > Compliance webhooks (or `compliance_topics` in "
    "shopify.app.toml): the three URLs, each an https URL of this service that the privacy handling serves.",
)

# Shopify cancel_reason -> our reason codes (staff and anything else: OTHER).
_REASON_CODES = {"customer": "CUSTOMER", "inventory": "INVENTORY", "fraud": "FRAUD", "declined": "DECLINED"}


def shopify_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _money(obj: Mapping, field: str, currency: str) -> int:
    """A money field of a Shopify object in `currency`: the `<field>_set` entry in that currency when
    present (shop vs presentment money), else the plain shop-currency field."""
    money_set = obj.get(f"{field}_set")
    if isinstance(money_set, Mapping):
        for key in ("presentment_money", "shop_money"):
            entry = money_set.get(key)
            if isinstance(entry, Mapping) and str(entry.get("currency_code", "")).upper() == currency:
                return to_minor_units(entry.get("amount"), currency)
    return to_minor_units(obj.get(field), currency)


def _first_money(obj: Mapping, fields: tuple[str, ...], currency: str) -> int:
    for field in fields:
        if field in obj or f"{field}_set" in obj:
            return abs(_money(obj, field, currency))
    return 0


def parse_refund(refund: Mapping, *, order_currency: str | None) -> PlatformRefund:
    """One Shopify Refund object (REST shape, spec 1.2) in minor units."""
    if refund.get("id") in (None, ""):
        raise PlatformDataInvalid("Shopify refund without an id")
    transactions = [t for t in refund.get("transactions") or [] if isinstance(t, Mapping)]
    successful = [t for t in transactions if t.get("kind") == "refund" and t.get("status") == "success"]
    currency = str(
        next((t.get("currency") for t in [*successful, *transactions] if t.get("currency")), None)
        or order_currency
        or ""
    ).upper()
    if not currency:
        raise PlatformDataInvalid(f"Shopify refund {refund.get('id')}: no currency in transactions or order")
    money = sum(to_minor_units(t.get("amount"), currency) for t in successful)

    # One order line may appear in several refund lines (restocked at two locations, one
    # `refund_line_items[]` entry per location): quantities and amounts are added up per line item,
    # so the refund names each order line once (first appearance keeps its place).
    per_line: dict[str, tuple[int, int]] = {}
    sub_total, tax = 0, 0
    for item in refund.get("refund_line_items") or []:
        line_subtotal = abs(_money(item, "subtotal", currency))
        sub_total += line_subtotal
        tax += abs(_money(item, "total_tax", currency))
        line_item_id = item.get("line_item_id") or (item.get("line_item") or {}).get("id")
        quantity = int(item.get("quantity") or 0)
        if line_item_id is not None and quantity > 0:
            seen_quantity, seen_amount = per_line.get(str(line_item_id), (0, 0))
            per_line[str(line_item_id)] = (seen_quantity + quantity, seen_amount + line_subtotal)
    lines = [RefundLine(line_id, quantity, amount) for line_id, (quantity, amount) in per_line.items()]

    shipping, shipping_tax = 0, 0
    for line in refund.get("refund_shipping_lines") or []:
        shipping += _first_money(line, ("subtotal_amount", "amount", "subtotal"), currency)
        shipping_tax += _first_money(line, ("tax_amount", "total_tax"), currency)
    if not refund.get("refund_shipping_lines"):
        # Before 2024-10 shipping refunds only appeared as order adjustments.
        for adjustment in refund.get("order_adjustments") or []:
            if adjustment.get("kind") == "shipping_refund":
                shipping += _first_money(adjustment, ("amount",), currency)
                shipping_tax += _first_money(adjustment, ("tax_amount",), currency)
    tax += shipping_tax

    restock = bool(refund.get("restock")) or any(
        item.get("restock_type") in ("return", "cancel", "legacy_restock")
        for item in refund.get("refund_line_items") or []
    )
    return PlatformRefund(
        external_id=str(refund["id"]),
        amount=money,
        parts=AmountParts(sub_total=sub_total, shipping=shipping, tax=tax),
        shipping_tax=shipping_tax,
        lines=tuple(lines),
        reason=str(refund.get("note") or "")[:255],
        restock=restock,
        created_at=parse_datetime(refund.get("processed_at") or refund.get("created_at")),
    )


def _lifecycle(topic: str) -> str:
    if topic == TOPIC_APP_UNINSTALLED:
        return LIFECYCLE_UNINSTALLED
    return topic if topic in COMPLIANCE_TOPICS else ""


class ShopifyAdapter:
    platform = Platform.SHOPIFY
    receives_webhooks = True
    polls_orders = False
    subscriptions = SUBSCRIPTIONS
    stored_headers = STORED_HEADERS

    def app_webhook_secrets(self) -> tuple[str, ...]:
        """The client secrets of the network's Shopify apps: /webhooks/shopify/ (compliance topics and
        app/uninstalled, configured once per app) verifies with them."""
        return tuple(secret for secret in getattr(settings, "SHOPIFY_APP_SECRETS", ()) if secret)

    capabilities = Capabilities(
        can_refund=True,
        partial=True,
        can_cancel=True,
        write_credentials=("shop_domain", "access_token"),
        # `orderCancel` is asynchronous (spec 1.4: it returns a `job`): the order shows cancelled
        # once the job ran.
        cancel_settles_later=True,
    )

    def order_cancel(self, connection, request: CancelRequest) -> None:
        """GraphQL `orderCancel` (spec 1.4) with `refund: false` (the network refunds, and records
        that refund on Shopify as a refund of its own). A cancelled order is left as it is."""
        client = ShopifyClient.from_connection(connection)
        order = client.get_order(request.order_id)
        if order.get("cancelled_at"):
            return
        data = client.graphql(
            ORDER_CANCEL_MUTATION,
            {
                "orderId": f"gid://shopify/Order/{request.order_id}",
                "reason": _CANCEL_REASONS.get(request.reason_code, "OTHER"),
                "refund": False,
                "restock": request.restock,
                "notifyCustomer": request.notify,
                "staffNote": request.note[:255],
            },
        )
        result = data.get("orderCancel") or {}
        errors = [e for e in result.get("orderCancelUserErrors") or [] if isinstance(e, Mapping)]
        if errors:
            message = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
            raise PlatformRequestRejected(
                f"Shopify refused the cancellation: {message}", platform="Shopify", http_status=422
            )

    def order_cancelled(self, connection, order_id: str) -> bool:
        """The REST order's `cancelled_at` is set once Shopify's cancel job ran."""
        return bool(ShopifyClient.from_connection(connection).get_order(order_id).get("cancelled_at"))

    def refund_find(self, connection, request: ForwardRequest) -> str | None:
        for refund in ShopifyClient.from_connection(connection).list_refunds(request.order_id):
            if request.marker in str(refund.get("note") or ""):
                return str(refund.get("id"))
        return None

    def refund_create(self, connection, request: ForwardRequest, *, before_send) -> str:
        client = ShopifyClient.from_connection(connection)
        restock_type = "return" if request.restock else "no_restock"
        lines = [
            {
                "line_item_id": _platform_id(line.line_item_external_id),
                "quantity": line.quantity,
                "restock_type": restock_type,
            }
            for line in request.lines
        ]
        asked: dict = {"refund_line_items": lines}
        if request.shipping:
            asked["shipping"] = {"amount": format_major(request.shipping, request.currency)}
        calculated = client.refund_calculate(request.order_id, asked)
        suggested = [
            t for t in calculated.get("transactions") or [] if isinstance(t, Mapping) and t.get("parent_id") is not None
        ]
        if not suggested:
            raise PlatformRequestRejected(
                "Shopify suggests no transaction to refund against: the order has nothing refundable left.",
                platform="Shopify",
                http_status=422,
            )
        parent = suggested[0]
        before_send()
        created = client.refund_create(
            request.order_id,
            {
                **asked,
                "currency": request.currency,
                "notify": request.notify,
                "note": request.note,
                "transactions": [
                    {
                        "parent_id": parent["parent_id"],
                        "amount": format_major(request.amount, request.currency),
                        "kind": "refund",
                        "gateway": parent.get("gateway") or "",
                    }
                ],
            },
        )
        if created.get("id") in (None, ""):
            raise PlatformDataInvalid("Shopify answered the refund create without a refund id.")
        return str(created["id"])

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        signature = (headers.get(HMAC_HEADER) or "").strip()
        if not signature:
            raise SignatureInvalid(f"Missing {HMAC_HEADER} header.")
        if not secret or not hmac.compare_digest(shopify_hmac(secret, body).encode(), signature.encode()):
            raise SignatureInvalid("The HMAC signature does not match the body.")
        payload = parse_json(body)
        event_id = (headers.get(WEBHOOK_ID_HEADER) or headers.get(EVENT_ID_HEADER) or "").strip()
        if not event_id:
            raise PayloadMalformed(f"Missing {WEBHOOK_ID_HEADER} header.")
        topic = (headers.get(TOPIC_HEADER) or "").strip()
        if not topic:
            raise PayloadMalformed(f"Missing {TOPIC_HEADER} header.")
        order_id = payload.get("order_id") if topic == TOPIC_REFUNDS_CREATE else payload.get("id")
        return WebhookEnvelope(
            event_id=event_id,
            topic=topic,
            order_id=str(order_id or "") if not _lifecycle(topic) else "",
            store_id=str(headers.get(SHOP_DOMAIN_HEADER) or payload.get("shop_domain") or "").strip().lower(),
            lifecycle=_lifecycle(topic),
        )

    def order_state(self, event) -> OrderState:
        # The app secret is shared by every shop of the app, so a genuine delivery for another shop
        # verifies too: the shop it names must be this connection's (spec reliability matrix row 35).
        expected_shop = str((event.connection.credentials or {}).get("shop_domain") or "").lower()
        sent_shop = str(CaseInsensitiveMapping(event.headers or {}).get(SHOP_DOMAIN_HEADER) or "").lower()
        if expected_shop and sent_shop and sent_shop != expected_shop:
            raise EventIgnored(f"The delivery is for shop {sent_shop}, but this connection is {expected_shop}.")
        payload = parse_json(event.body)
        if event.topic == TOPIC_REFUNDS_CREATE:
            if payload.get("order_id") in (None, ""):
                raise PlatformDataInvalid("refunds/create without order_id")
            # A refund that moved no money may carry no transaction: the shop's currency then.
            refund = parse_refund(payload, order_currency=event.connection.merchant.currency)
            return OrderState(
                platform=self.platform,
                order_id=str(payload["order_id"]),
                topic=event.topic,
                currency=_refund_currency(payload) or event.connection.merchant.currency,
                refunds=(refund,),
            )
        if event.topic in ORDER_TOPICS:
            return self._order_payload_state(payload, event.topic)
        raise EventIgnored(f"Shopify topic {event.topic!r} carries no refund signal.")

    def _order_payload_state(self, order: Mapping, topic: str) -> OrderState:
        if order.get("id") in (None, ""):
            raise PlatformDataInvalid(f"{topic} without an order id")
        currency = str(order.get("presentment_currency") or order.get("currency") or "").upper()
        if not currency:
            raise PlatformDataInvalid(f"{topic} order {order['id']} has no currency")
        refunds = tuple(
            parse_refund(refund, order_currency=currency)
            for refund in order.get("refunds") or []
            if isinstance(refund, Mapping)
        )
        lines = tuple(
            OrderLine(
                external_id=str(item.get("id")),
                quantity=int(item.get("quantity") or 0),
                unit_price=to_minor_units(item.get("price"), currency),
                sku=str(item.get("sku") or ""),
            )
            for item in order.get("line_items") or []
            if isinstance(item, Mapping)
        )
        return OrderState(
            platform=self.platform,
            order_id=str(order["id"]),
            topic=topic,
            currency=currency,
            status="cancelled" if order.get("cancelled_at") else "open",
            payment_status=str(order.get("financial_status") or ""),
            cancelled=bool(order.get("cancelled_at")),
            fulfilled=order.get("fulfillment_status") == "fulfilled",
            placed_at=parse_datetime(order.get("created_at")),
            lines=lines,
            refunds=refunds,
            cancel_reason=str(order.get("cancel_reason") or ""),
        )

    def refund_decision(self, state: OrderState, bag) -> RefundDecision:
        refunds, notes = explicit_refunds_with_money(state)
        reason_code = _REASON_CODES.get(state.cancel_reason.lower(), "OTHER")
        if state.cancelled and reason_code != "OTHER":
            refunds = tuple(_with_reason_code(r, reason_code) for r in refunds)
        if refunds:
            return RefundDecision(refunds=refunds)
        if state.cancelled:
            reason = (
                "Order cancelled without a refund ('Refund payments later'): no money moved. "
                "Seed 000: merchants must choose 'Refund payments NOW'; a later refund arrives as refunds/create."
            )
        else:
            reason = "No refund in this payload."
        return RefundDecision(ignored_reason="; ".join([reason, *notes]))

    def read_order_state(self, connection, order_id: str) -> OrderState:
        """Parity check: the REST order with its refunds, read like an `orders/updated` body."""
        order = ShopifyClient.from_connection(connection).get_order(order_id)
        return self._order_payload_state(order, PARITY_TOPIC)


def _refund_currency(refund: Mapping) -> str | None:
    for transaction in refund.get("transactions") or []:
        if isinstance(transaction, Mapping) and transaction.get("currency"):
            return str(transaction["currency"]).upper()
    return None


def _with_reason_code(refund: PlatformRefund, reason_code: str) -> PlatformRefund:
    return replace(refund, reason_code=reason_code)


ORDER_CANCEL_MUTATION = """
mutation OrderCancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, $restock: Boolean!,
                     $notifyCustomer: Boolean, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, refund: $refund, restock: $restock,
              notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}
"""
# Our reason codes -> Shopify's OrderCancelReason.
_CANCEL_REASONS = {"CUSTOMER": "CUSTOMER", "INVENTORY": "INVENTORY", "FRAUD": "FRAUD", "DECLINED": "DECLINED"}


def _platform_id(value: str) -> int | str:
    """Shopify ids are integers in REST bodies; anything else is sent as it is."""
    return int(value) if str(value).isdigit() else value

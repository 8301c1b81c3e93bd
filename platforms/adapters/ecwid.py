"""Ecwid: `order.updated` webhooks, the order read back from the REST API (spec section 2, seed 000).

Rules:
- Seed 000: Ecwid does not let API-placed (Violet) orders be refunded in its UI, so merchants cancel
  them instead. Payment status CANCELLED (and REFUNDED, which a merchant may set by hand) means a
  refund of everything still refundable on the bag, external id `cancel:<order id>`: one id for
  both, so cancelling and then marking refunded never refunds twice.
- PARTIALLY_REFUNDED is ignored: Ecwid gives no amount for it outside its own processor (spec 2.4).
- The signature covers only `"{eventCreated}.{eventId}"`, never the body (spec 2.5), so the body
  is treated as "event X happened to order Y" and the order's truth is read from the API.

Readings of ⚠️/❓ items, kept here:
- Signature: header `X-Ecwid-Webhook-Signature` = base64(HMAC-SHA256(client_secret,
  "{eventCreated}.{eventId}")). Because the signed string lives inside the body, the JSON must be
  parsed before the signature can be checked (unlike Shopify and Wix).
- The order id: `data.orderId` (current docs), with `entityId` (internal number) as a fallback; the
  bag may be stored under the API order's `id`, `internalId` or `orderNumber`, all are tried.
- The order has no currency field in the documented responses: the merchant's currency is used.

App-level endpoint (issue #15 item 1): Ecwid sends every installed store's webhooks to the app's
one Webhook URL, signed with the app's client secret. `/webhooks/ecwid/` checks the signature with
the ECWID_CLIENT_SECRETS setting (one per Ecwid app of the network) and routes by the body's
`storeId` to the connection whose credentials name that `store_id`. The per-connection URL
`/webhooks/ecwid/<public id>/` keeps using the connection's stored secret and ignores other stores.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from django.conf import settings

from platforms.adapters.base import (
    LIFECYCLE_UNINSTALLED,
    NO_WRITES,
    PARITY_TOPIC,
    Delivery,
    EventIgnored,
    OrderLine,
    OrderState,
    PayloadMalformed,
    RefundDecision,
    SignatureInvalid,
    SubscriptionPlan,
    WebhookEnvelope,
    cancellation_refund,
    parse_datetime,
    parse_json,
    to_minor_units,
)
from platforms.clients.base import PlatformNotFound
from platforms.clients.ecwid import EcwidClient
from platforms.models import Platform
from violet_refunds.money import AmountParts

SIGNATURE_HEADER = "X-Ecwid-Webhook-Signature"
ORDER_EVENT_TYPES = ("order.updated", "order.created")

# Issue #24: Ecwid has no per-store webhook API; the app's one Webhook URL and its events are set in
# the app's settings (by Ecwid's app support for the app), for every store that installs the app.
SUBSCRIPTIONS = SubscriptionPlan(
    delivery=Delivery.APP_LEVEL,
    app_level_topics=("order.updated", "application.uninstalled"),
    app_level_setup="Ecwid app settings (ask Ecwid app support for the app): Webhook URL = "
    "https://<this service>/webhooks/ecwid/, events order.updated and application.uninstalled; "
    "the app's client_secret in ECWID_CLIENT_SECRETS.",
)
# The app was removed from the store (Ecwid webhook event types: application.installed/uninstalled).
EVENT_APP_UNINSTALLED = "application.uninstalled"
# Payment statuses that mean "refund what is left" for a Violet order (seed 000).
REFUND_PAYMENT_STATUSES = ("CANCELLED", "REFUNDED")


def ecwid_signature(secret: str, event_created, event_id: str) -> str:
    message = f"{event_created}.{event_id}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _store_id_from_body(payload: Mapping) -> str:
    return str(payload.get("storeId") or "").strip()


def _order_id_from_body(payload: Mapping) -> str:
    data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
    return str(data.get("orderId") or payload.get("entityId") or "")


class EcwidAdapter:
    platform = Platform.ECWID
    receives_webhooks = True
    polls_orders = False
    subscriptions = SUBSCRIPTIONS
    # Forwarding (issue 14): the spec documents only reading an order (2.7) and Ecwid has no refund
    # object (2.3-2.4), so a channel refund is not written to Ecwid: the merchant mirrors it by hand.
    capabilities = NO_WRITES
    # How an app-level outcome names the store ("No connection for Ecwid store 2004").
    store_label = "Ecwid store"

    def app_webhook_secrets(self) -> tuple[str, ...]:
        """The client secrets of the network's Ecwid apps: what /webhooks/ecwid/ verifies with."""
        return tuple(secret for secret in getattr(settings, "ECWID_CLIENT_SECRETS", ()) if secret)

    def store_id_of_event(self, event) -> str:
        """The store a stored delivery is for (routing a delivery stored without a connection)."""
        return _store_id_from_body(parse_json(event.body))

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        payload = parse_json(body)
        event_id = str(payload.get("eventId") or "").strip()
        event_created = payload.get("eventCreated")
        if not event_id or event_created in (None, ""):
            raise PayloadMalformed("eventId and eventCreated are required.")
        signature = (headers.get(SIGNATURE_HEADER) or "").strip()
        if not signature:
            raise SignatureInvalid(f"Missing {SIGNATURE_HEADER} header.")
        expected = ecwid_signature(secret, event_created, event_id) if secret else ""
        if not expected or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise SignatureInvalid("The signature does not match eventCreated.eventId.")
        return WebhookEnvelope(
            event_id=event_id,
            topic=str(payload.get("eventType") or ""),
            order_id=_order_id_from_body(payload),
            store_id=_store_id_from_body(payload),
            lifecycle=LIFECYCLE_UNINSTALLED if payload.get("eventType") == EVENT_APP_UNINSTALLED else "",
        )

    def order_state(self, event) -> OrderState:
        payload = parse_json(event.body)
        event_type = str(payload.get("eventType") or event.topic)
        if event_type not in ORDER_EVENT_TYPES:
            raise EventIgnored(f"Ecwid event type {event_type!r} carries no refund signal.")
        order_id = _order_id_from_body(payload)
        if not order_id:
            raise EventIgnored("The Ecwid event names no order.")
        client = EcwidClient.from_connection(event.connection)
        body_store = _store_id_from_body(payload)
        if body_store and body_store != client.store_id:
            raise EventIgnored(
                f"The event is for Ecwid store {body_store}, but this connection is store {client.store_id}. "
                "Ecwid sends every store's events to the app's one webhook URL: configure /webhooks/ecwid/, "
                "which routes them by store."
            )
        try:
            order = client.get_order(order_id)
        except PlatformNotFound as exc:
            raise EventIgnored(f"Ecwid has no order {order_id} in store {client.store_id}.") from exc
        return self.state_from_order(
            order, fallback_currency=event.connection.merchant.currency, topic=event_type, body_order_id=order_id
        )

    def read_order_state(self, connection, order_id: str) -> OrderState:
        """Parity check: the order as the Ecwid API shows it now (what an `order.updated` reads)."""
        order = EcwidClient.from_connection(connection).get_order(order_id)
        return self.state_from_order(
            order, fallback_currency=connection.merchant.currency, topic=PARITY_TOPIC, body_order_id=order_id
        )

    def state_from_order(
        self, order: Mapping, *, fallback_currency: str, topic: str = "", body_order_id: str = ""
    ) -> OrderState:
        currency = str(order.get("currency") or fallback_currency).upper()

        def money(value) -> int:
            return to_minor_units(value, currency, round_half_up=True)

        shipping_option = order.get("shippingOption") if isinstance(order.get("shippingOption"), Mapping) else {}
        lines = tuple(
            OrderLine(
                external_id=str(item.get("id")),
                quantity=int(item.get("quantity") or 0),
                unit_price=money(item.get("price")),
                sku=str(item.get("sku") or ""),
            )
            for item in order.get("items") or []
            if isinstance(item, Mapping)
        )
        payment_status = str(order.get("paymentStatus") or "")
        alternates = tuple(
            str(value) for value in (order.get("internalId"), order.get("orderNumber"), body_order_id) if value
        )
        return OrderState(
            platform=self.platform,
            order_id=str(order.get("id") or body_order_id),
            alternate_order_ids=alternates,
            topic=topic,
            currency=currency,
            status=str(order.get("fulfillmentStatus") or ""),
            payment_status=payment_status,
            cancelled=payment_status == "CANCELLED",
            fulfilled=order.get("fulfillmentStatus") in ("SHIPPED", "DELIVERED"),
            placed_at=parse_datetime(order.get("createTimestamp") or order.get("createDate")),
            totals=AmountParts(
                sub_total=money(order.get("subtotal")),
                shipping=money(shipping_option.get("shippingRate")),
                tax=money(order.get("tax")),
            ),
            lines=lines,
        )

    def refund_decision(self, state: OrderState, bag) -> RefundDecision:
        if state.payment_status in REFUND_PAYMENT_STATUSES:
            return RefundDecision(
                refunds=(
                    cancellation_refund(
                        bag, reason=f"Ecwid payment status {state.payment_status}: treated as a refund (seed 000)."
                    ),
                )
            )
        if state.payment_status == "PARTIALLY_REFUNDED":
            return RefundDecision(
                ignored_reason=(
                    "Ecwid PARTIALLY_REFUNDED carries no refund amount; seed 000 asks merchants to cancel "
                    "Violet orders instead (or to send a refund notice)."
                )
            )
        return RefundDecision(
            ignored_reason=f"Ecwid payment status {state.payment_status or 'unknown'} is not a refund signal."
        )

"""The adapter protocol and the normalized values every platform adapter produces.

An adapter turns whatever a platform sent (a signed webhook body, an API read, a poll result) into
`OrderState`: the platform's current view of one order, with money in integer minor units. Its
`refund_decision` then applies that platform's rules (seed 000 / 003, docs/platforms.md) and names
the refunds the state implies. `platforms.services.order_reconcile` records whatever is missing, so
a duplicated, stale or out-of-order signal changes nothing ("reconcile, don't interpret deltas").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from violet_refunds import money
from violet_refunds.exceptions import ApplicationError
from violet_refunds.money import AmountParts

if TYPE_CHECKING:
    from platforms.models import InboundEvent, StoreConnection
    from refunds.models import Bag


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class SignatureInvalid(ApplicationError):
    """The delivery is not provably from the platform: missing, malformed or wrong signature."""

    status_code = 401
    error_code = "invalid_signature"


class PayloadMalformed(ApplicationError):
    """Authentic (or not yet checkable) but unreadable: not JSON, or required fields missing."""

    status_code = 400
    error_code = "malformed_payload"


class EventIgnored(Exception):
    """Processing decided the event implies nothing; `reason` says why (kept in `outcome`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OrderUnknown(EventIgnored):
    """The event names an order that is not (yet) a bag of the merchant. Processing keeps the event
    AWAITING_ORDER and tries again when a bag with one of `order_ids` appears (or until it expires).

    A subclass of EventIgnored so code that only knows "this event implies nothing now" still works;
    `platforms.services.event_process` tells the two apart."""

    def __init__(self, reason: str, *, order_ids: tuple[str, ...] = ()):
        super().__init__(reason)
        self.order_ids = tuple(order_id for order_id in order_ids if order_id)


class PlatformDataInvalid(Exception):
    """The platform's data cannot be turned into an order state (bad amount, missing id...)."""


# --------------------------------------------------------------------------------------------------
# Money: decimal strings from platforms -> integer minor units, never through float
# --------------------------------------------------------------------------------------------------


def to_minor_units(value, currency: str, *, round_half_up: bool = False) -> int:
    """'10.50' USD -> 1050 through the money module; a bad amount is the platform's data problem."""
    try:
        return money.decimal_to_minor_units(value, currency, round_half_up=round_half_up)
    except money.AmountInvalid as exc:
        raise PlatformDataInvalid(str(exc)) from exc


def parse_json(raw: bytes | str) -> dict:
    """A JSON object with every non-integer number as Decimal. Raises PayloadMalformed."""
    try:
        data = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadMalformed(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadMalformed("The body must be a JSON object.")
    return data


def json_object(raw) -> dict:
    """A nested layer that is either already an object or a JSON string holding one (Wix)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        return parse_json(raw)
    raise PayloadMalformed("Expected a JSON object or a string holding one.")


# --------------------------------------------------------------------------------------------------
# Normalized values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    """One line of the platform order; `external_id` is the platform line-item id (OrderSku.external_id)."""

    external_id: str
    quantity: int
    unit_price: int
    sku: str = ""


@dataclass(frozen=True)
class RefundLine:
    """A refunded line: platform line-item id, quantity, and its refunded sub_total when the platform says."""

    line_item_external_id: str
    quantity: int
    amount: int | None = None


@dataclass(frozen=True)
class PlatformRefund:
    """A refund the platform shows, or one its rules imply (a cancellation-as-refund).

    - `amount`: money actually returned to the shopper (minor units); None = the platform gives no
      amount, i.e. "everything still refundable on the bag" (cancellations).
    - `parts`: how the platform split it, when it did (Shopify); None = let the bag decide.
    - `shipping_included`: the platform says shipping was part of it but not how much (Wix).
    """

    external_id: str
    amount: int | None = None
    parts: AmountParts | None = None
    shipping_tax: int = 0
    lines: tuple[RefundLine, ...] = ()
    shipping_included: bool = False
    reason: str = ""
    reason_code: str = "OTHER"
    restock: bool = False
    created_at: datetime | None = None

    @property
    def is_full_remaining(self) -> bool:
        return self.amount is None and self.parts is None


@dataclass(frozen=True)
class OrderState:
    """The platform's current view of one order, as far as the signal tells (None = not told)."""

    platform: str
    order_id: str
    topic: str = ""
    currency: str | None = None
    status: str = ""  # the platform's own order status, verbatim
    payment_status: str = ""
    cancelled: bool | None = None
    fulfilled: bool | None = None
    placed_at: datetime | None = None
    totals: AmountParts | None = None
    lines: tuple[OrderLine, ...] = ()
    refunds: tuple[PlatformRefund, ...] = ()
    cancel_reason: str = ""
    # Other spellings of the order id the bag may have been stored under (Ecwid: internal number).
    alternate_order_ids: tuple[str, ...] = ()

    @property
    def order_ids(self) -> tuple[str, ...]:
        return (self.order_id, *(i for i in self.alternate_order_ids if i and i != self.order_id))


@dataclass(frozen=True)
class RefundDecision:
    """What the platform's rules say about an order state: the refunds that must exist, or why none."""

    refunds: tuple[PlatformRefund, ...] = ()
    ignored_reason: str = ""


@dataclass(frozen=True)
class WebhookEnvelope:
    """What the receiver needs from an authenticated delivery before storing it."""

    event_id: str
    topic: str
    order_id: str = ""
    # The platform's own id of the store the delivery is for, when the body names it (Ecwid
    # `storeId`, Wix `instanceId`): app-level endpoints route by it (StoreConnection.external_store_id).
    store_id: str = ""
    # A delivery about the connection itself, not an order (issue #22): LIFECYCLE_UNINSTALLED, or a
    # Shopify compliance topic (customers/data_request, customers/redact, shop/redact). The receiver
    # acts on it at once and stores no InboundEvent for it.
    lifecycle: str = ""


# The app was removed from the store: platforms.privacy.disconnect.
LIFECYCLE_UNINSTALLED = "uninstalled"
# The platform anonymized the order named by `order_id` at a privacy request (Wix
# `triggeredByAnonymizeRequest`): our copy of its shopper data is erased (platforms.privacy.erasure).
LIFECYCLE_ORDER_ANONYMIZED = "order_anonymized"


@dataclass(frozen=True)
class PollResult:
    """One store's poll: orders read, events stored, and how far the cursor may move (None: failed)."""

    connection_id: int
    orders_seen: int = 0
    events_created: int = 0
    error: str = ""
    polled_until: datetime | None = None


class Delivery:
    """Where a platform delivers a store's webhooks (issue #24)."""

    # /webhooks/<platform>/<connection public id>/, registered per store through the platform's API.
    PER_CONNECTION = "per_connection"
    # The app's one URL (/webhooks/ecwid/, /webhooks/wix/), configured once in the app's settings.
    APP_LEVEL = "app_level"
    # No webhooks at all: the store is polled (SFCC).
    NONE = "none"


@dataclass(frozen=True)
class SubscriptionPlan:
    """What an adapter declares about webhook subscriptions (issue #24):

    - `topics`: registered per store by platforms.subscriptions (the refund and cancellation topics
      its rules read, plus uninstall), delivered to the connection's own URL;
    - `app_level_topics`: topics only the app's configuration can subscribe (Ecwid's app Webhook
      URL, Wix's app dashboard, Shopify's compliance topics): never registered or verified per
      store; `app_level_setup` tells the operator what to set, once (README, "Webhook subscriptions");
    - `registration`: how the topics are registered (the platforms.subscriptions module's method).
    """

    delivery: str
    topics: tuple[str, ...] = ()
    registration: str = ""
    app_level_topics: tuple[str, ...] = ()
    app_level_setup: str = ""


NO_WEBHOOKS = SubscriptionPlan(delivery=Delivery.NONE)


@dataclass(frozen=True)
class Capabilities:
    """What Violet can write to a platform on a channel's behalf (issue 14). The one rule that reads
    them, "forward, or tell the merchant", is platforms.forwarding.forwarding_decide.

    - `can_refund`: a refund can be recorded on the platform through its API.
    - `partial`: ... of part of an order too (else only a refund of everything left is forwarded).
    - `can_cancel`: an order can be cancelled through its API.
    - `write_credentials`: what the store connection must hold to write (else: tell the merchant).
    - `cancel_settles_later`: the platform accepts a cancel and performs it afterwards (Shopify's
      `orderCancel` job), so an order read right after a lost answer may still show it open: such a
      read is never taken as "not cancelled" (platforms.cancellation).
    """

    can_refund: bool = False
    partial: bool = False
    can_cancel: bool = False
    write_credentials: tuple[str, ...] = ()
    cancel_settles_later: bool = False


NO_WRITES = Capabilities()


@dataclass(frozen=True)
class ForwardLine:
    line_item_external_id: str  # the platform's line item id (OrderSku.external_id)
    quantity: int
    amount: int  # the line's refunded sub_total, minor units


@dataclass(frozen=True)
class ForwardRequest:
    """A channel refund as the platform is asked to record it (money in minor units of `currency`).
    `note` starts with our marker (refunds.services.forwarding.forwarding_marker): the platform's
    refund list and its echo webhook return it, which is how our refund is found there again."""

    refund_id: int
    order_id: str
    currency: str
    amount: int
    sub_total: int
    shipping: int
    tax: int
    lines: tuple[ForwardLine, ...]
    restock: bool
    notify: bool
    note: str
    marker: str
    full: bool


class RefundWriter(Protocol):
    """An adapter whose `capabilities.can_refund` is true also implements these."""

    def refund_find(self, connection: StoreConnection, request: ForwardRequest) -> str | None:
        """The platform's id of a refund of the order carrying `request.marker`, if one exists."""

    def refund_create(
        self, connection: StoreConnection, request: ForwardRequest, *, before_send: Callable[[], None]
    ) -> str:
        """Record the refund on the platform (never moving money there); its platform id.
        `before_send()` is called right before the request that creates it (not before read-only
        calls such as a quote). Raises PlatformRequestRejected (the platform said no),
        PlatformUnavailable, ..."""


@dataclass(frozen=True)
class CancelRequest:
    """A channel's cancellation of one order, as the platform is asked to record it."""

    order_id: str
    reason: str
    reason_code: str  # OTHER, CUSTOMER, INVENTORY, FRAUD, DECLINED
    restock: bool
    notify: bool
    note: str


class OrderCanceller(Protocol):
    """An adapter whose `capabilities.can_cancel` is true also implements this."""

    def order_cancel(self, connection: StoreConnection, request: CancelRequest) -> None:
        """Cancel the order on the platform without refunding there (the network refunds).
        Idempotent: cancelling a cancelled order is done. Raises PlatformRequestRejected (the
        platform said no, e.g. fulfilled), PlatformUnavailable, ..."""

    def order_cancelled(self, connection: StoreConnection, order_id: str) -> bool:
        """Whether the platform shows the order cancelled now (a read, no write): how a cancel
        whose answer was lost (timeout, 5xx, unreadable body) is looked up before answering."""


# The topic of the order states the parity check reads (`read_order_state`): no event, an API read.
PARITY_TOPIC = "parity/order"


# What a polling adapter hands each order it turns into an event: store it (once per event id) and
# say whether it was new. platforms.services.event_ingest behind it, like a webhook delivery.
EventSink = Callable[["StoreConnection", WebhookEnvelope, str], bool]


class PlatformAdapter(Protocol):
    @property
    def platform(self) -> str:
        """The Platform value this adapter speaks for (read-only: adapters set a class attribute)."""

    receives_webhooks: bool
    # A platform without (usable) webhooks is polled instead: see PollingAdapter.
    polls_orders: bool
    # The webhook subscriptions the product needs at the platform (issue #24).
    subscriptions: SubscriptionPlan

    @property
    def capabilities(self) -> Capabilities:
        """What can be written to the platform (forwarding channel refunds): see Capabilities.
        Read-only: most adapters set a class attribute; Wix's follows its settings."""

    def authenticate(self, *, body: bytes, headers: Mapping[str, str], secret: str) -> WebhookEnvelope:
        """Verify the raw bytes came from the platform, then read the envelope.
        Raises SignatureInvalid (401) or PayloadMalformed (400)."""

    def order_state(self, event: InboundEvent) -> OrderState:
        """The order state a stored event stands for (may read the platform's API).
        Raises EventIgnored, PlatformDataInvalid, or a platforms.clients error."""

    def refund_decision(self, state: OrderState, bag: Bag) -> RefundDecision:
        """This platform's rules: which refunds the state implies for the bag."""

    def read_order_state(self, connection: StoreConnection, order_id: str) -> OrderState:
        """The platform's current state of one order, read through its API client (the parity
        check: what a lost webhook would have told us). Raises PlatformClientError (PlatformNotFound
        when the platform has no such order), PlatformDataInvalid or EventIgnored."""


class PollingAdapter(PlatformAdapter, Protocol):
    """An adapter with `polls_orders = True`: platforms.services.platform_orders_poll asks it, store
    by store, for the orders changed since the connection's cursor."""

    def connections_to_poll(self) -> Iterable[StoreConnection]:
        """The store connections this platform polls."""

    def connection_poll(self, connection: StoreConnection, *, now: datetime, ingest: EventSink) -> PollResult:
        """Read the orders changed since `connection.last_polled_at`, hand those that are events to
        `ingest`, and say up to when (`polled_until`) the window was read. Raises PlatformClientError."""


def explicit_refunds_with_money(state: OrderState) -> tuple[tuple[PlatformRefund, ...], list[str]]:
    """Platform refunds that returned money, and a note for each that did not (restock-only,
    pending or failed transactions): those move nothing, so they record nothing."""
    kept, notes = [], []
    for refund in state.refunds:
        if refund.amount is not None and refund.amount <= 0:
            notes.append(f"refund {refund.external_id} returned no money (no successful refund transaction)")
        else:
            kept.append(refund)
    return tuple(kept), notes


# Order or payment statuses (lower-cased) that speak of a refund or a cancellation on some platform.
_REFUND_STATUS_WORDS = frozenset({"refunded", "partially_refunded", "cancelled", "canceled"})


def state_signals_refund(state: OrderState) -> bool:
    """Whether a state could imply a refund for some bag: a refund that returned money (or gives no
    amount), a cancellation, or a refunded/cancelled status. Used when the order is not (yet) a bag:
    such an event awaits its order; anything else (an order update of a store's own order) is
    ignored at once."""
    if state.cancelled:
        return True
    if any(refund.amount is None or refund.amount > 0 for refund in state.refunds):
        return True
    return bool({state.status.lower(), state.payment_status.lower()} & _REFUND_STATUS_WORDS)


def cancellation_refund(bag: Bag, *, reason: str, reason_code: str = "OTHER") -> PlatformRefund:
    """A cancellation that counts as a refund: everything still refundable, `cancel:<order id>`."""
    return PlatformRefund(
        external_id=f"cancel:{bag.external_id}", reason=reason[:255], reason_code=reason_code, restock=True
    )


def parse_datetime(value) -> datetime | None:
    """ISO-8601 (with Z) or UNIX seconds; None when absent or unreadable (callers fall back)."""
    if value in (None, ""):
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(int(value), tz=UTC)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # Ecwid writes "2014-06-06 18:57:19 +0000".
        try:
            parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed

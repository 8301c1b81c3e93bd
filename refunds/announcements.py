"""What the refund domain announces to channels: the webhook events of a refund change.

The refund services call these functions inside the transaction that makes the change, so an event
exists exactly when its change was committed (docs/violet-api.md, Outbound webhooks). Here is decided which
events a change makes and with what dedupe key (refund + status + retry round, bag + transition +
refunded total), and their body is rendered (refunds.representation: the Order Refund object, or
the full Order); the notifications outbox numbers them per bag under the bag's lock, stores them
and makes their deliveries. Emitting a change again finds its key and does nothing, so a
reprocessed refund or a replayed platform signal never sends twice.

Cost: a fixed handful of queries per call, however many events, endpoints, bags or SKUs
(tests/notifications/test_outbox_cost.py): the bag's lock (with the app's endpoints, and a refund's
retry round), the body's root row with the outbox state (stop there if nothing is new), the rest of
the body (only relations that have rows; none for a refund on PostgreSQL, whose body comes rendered
with the root row), then one INSERT of events and one of deliveries. Bodies are rendered by
refunds.representation without DRF.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet, Subquery, prefetch_related_objects
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from notifications import selectors as notification_selectors
from notifications.models import EventType, WebhookEvent
from notifications.services import outbox
from notifications.services.outbox import OutboxEvent
from payments.models import TransferReversal
from refunds import representation
from refunds.models import Bag, BagStatus, Order, OrderSku, Refund, RefundError, RefundEvent, RefundSku, RefundStatus

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

REFUND_EVENT_TYPES: dict[str, str] = {
    RefundStatus.PROCESSING: EventType.REFUND_PROCESSING,
    RefundStatus.COMPLETED: EventType.REFUND_COMPLETED,
    RefundStatus.PARTIALLY_COMPLETED: EventType.REFUND_PARTIALLY_COMPLETED,
    RefundStatus.FAILED: EventType.REFUND_FAILED,
    RefundStatus.EXTERNAL: EventType.REFUND_EXTERNAL,
    RefundStatus.CANCELED: EventType.REFUND_CANCELED,
}
REFUNDED_BAG_STATUSES = (BagStatus.REFUNDED, BagStatus.PARTIALLY_REFUNDED)


def refund_event_emit(refund: Refund) -> WebhookEvent | None:
    """The REFUND_<status> event of the refund's current status, once per status and retry round
    (a retried refund that fails again is a new change; a reprocessed one is not)."""
    event_type = REFUND_EVENT_TYPES.get(refund.status)
    if event_type is None:
        return None
    # No savepoint: the caller's transaction is the unit (an error here must undo the change too).
    with transaction.atomic(savepoint=False):
        bag = notification_selectors.bag_lock_for_events(
            refund.bag_id, reads={"retry_round": _refund_retry_round(refund.pk)}
        )
        dedupe_key = f"refund:{refund.pk}:{refund.status}:{bag.reads['retry_round']}"
        current, state = notification_selectors.outbox_state_with(
            _refund_for_payload(refund.pk), bag_id=bag.id, dedupe_keys=[dedupe_key]
        )
        if dedupe_key in state.emitted:
            return None
        (event,) = outbox.events_write(
            bag,
            state,
            [OutboxEvent(event_type, dedupe_key, refund_id=refund.pk)],
            payload=_refund_payload(current),
        )
    return event


def bag_refund_events_emit(bag: Bag, *, refunded_amount: int, drops: int = 0) -> list[WebhookEvent]:
    """After the bag's refunded total changed: ORDER_REFUNDED (unless the bag is CANCELED, which
    Violet reports as ORDER_CANCELLED instead) and ORDER_UPDATED, once per refunded total. `drops`:
    how often a refund of the bag stopped counting (a late Stripe failure); a total reached again
    after a drop is news again, so it is part of the dedupe key from the first drop on."""
    round_suffix = f":r{drops}" if drops else ""
    planned = []
    if bag.status in REFUNDED_BAG_STATUSES:
        planned.append(
            OutboxEvent(
                EventType.ORDER_REFUNDED, f"bag:{bag.pk}:{EventType.ORDER_REFUNDED}:{refunded_amount}{round_suffix}"
            )
        )
    planned.append(
        OutboxEvent(
            EventType.ORDER_UPDATED,
            f"bag:{bag.pk}:{EventType.ORDER_UPDATED}:{bag.financial_status}:{refunded_amount}{round_suffix}",
        )
    )
    return _order_events_emit(bag.pk, planned)


def bag_cancel_events_emit(bag: Bag) -> list[WebhookEvent]:
    """The bag became CANCELED: ORDER_CANCELLED and ORDER_UPDATED, once per bag."""
    return _order_events_emit(
        bag.pk,
        [
            OutboxEvent(EventType.ORDER_CANCELLED, f"bag:{bag.pk}:{EventType.ORDER_CANCELLED}"),
            OutboxEvent(EventType.ORDER_UPDATED, f"bag:{bag.pk}:{EventType.ORDER_UPDATED}:{BagStatus.CANCELED}"),
        ],
    )


def _order_events_emit(bag_id: int, planned: Sequence[OutboxEvent]) -> list[WebhookEvent]:
    """Order events of one change: they carry the same body (the full Order), rendered once."""
    with transaction.atomic(savepoint=False):
        bag = notification_selectors.bag_lock_for_events(bag_id)
        order, state = notification_selectors.outbox_state_with(
            Order.objects.filter(pk=bag.order_id), bag_id=bag.id, dedupe_keys=_dedupe_keys(planned)
        )
        new = [item for item in planned if item.dedupe_key not in state.emitted]
        if not new:
            return []
        _order_payload_load(order)
        return outbox.events_write(bag, state, new, payload=representation.order_representation(order))


def _dedupe_keys(planned: Sequence[OutboxEvent]) -> list[str]:
    """The keys of planned order events: each names its change (None is only for a resent copy)."""
    keys = []
    for item in planned:
        if item.dedupe_key is None:
            raise ValueError(f"An order event needs a dedupe key: {item!r}")
        keys.append(item.dedupe_key)
    return keys


# --- what the bodies read ------------------------------------------------------------------------


def _refund_retry_round(refund_id: int) -> Coalesce:
    """How often the refund was retried (RETRY_REQUESTED events; 0 when never), as an expression
    read along with the bag's lock."""
    retries = (
        RefundEvent.objects.filter(refund_id=refund_id, kind=RefundEvent.Kind.RETRY_REQUESTED)
        .order_by()
        .values("refund_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(retries), 0)


class _PayloadFlags(TypedDict):
    """What `_refund_for_payload` annotates the refund with."""

    payload_has_skus: bool
    payload_has_errors: bool
    payload_has_transfer_reversals: bool


def _refund_for_payload(refund_id: int) -> QuerySet[Refund]:
    """On PostgreSQL: the refund's id and its Order Refund object, rendered by the statement that
    also reads the outbox state (representation.REFUND_JSON, the API's renderer). Elsewhere: the
    refund with its bag, order and payment (one row); whether it has SKUs, errors and transfer
    reversals is read along, so `_refund_payload_load` queries only those it has."""
    if representation.refunds_render_in_sql():
        rendered = RawSQL(  # noqa: S611 - constant SQL; its one value is a parameter
            f"(SELECT ({representation.REFUND_JSON})::text FROM {Refund._meta.db_table} r "  # noqa: S608
            f"{representation.REFUND_JSON_JOINS} WHERE r.id = {Refund._meta.db_table}.id)",
            representation.refund_json_params(),
        )
        return Refund.objects.filter(pk=refund_id).only("id").annotate(payload_json=rendered)
    return (
        Refund.objects.filter(pk=refund_id)
        .select_related("bag__order__payment_transaction")
        .annotate(
            payload_has_skus=Exists(RefundSku.objects.filter(refund_id=OuterRef("pk"))),
            payload_has_errors=Exists(RefundError.objects.filter(refund_id=OuterRef("pk"))),
            payload_has_transfer_reversals=Exists(TransferReversal.objects.filter(refund_id=OuterRef("pk"))),
        )
    )


def _refund_payload(refund) -> dict:
    """The Order Refund object of a row read through `_refund_for_payload`."""
    rendered = getattr(refund, "payload_json", None)
    if rendered is not None:
        return json.loads(rendered)
    _refund_payload_load(refund)
    return representation.refund_representation(refund)


def _refund_payload_load(refund: WithAnnotations[Refund, _PayloadFlags]) -> None:
    """Everything else the Order Refund object shows (as the refunds API loads it): one query per
    relation that has rows; an empty one is known empty without asking (`none()` never queries)."""

    def rows(queryset: QuerySet, present: bool) -> QuerySet:
        return queryset if present else queryset.none()

    prefetch_related_objects(
        [refund],
        Prefetch("skus", queryset=rows(RefundSku.objects.all(), refund.payload_has_skus)),
        Prefetch("errors", queryset=rows(RefundError.objects.all(), refund.payload_has_errors)),
        Prefetch(
            "transfer_reversals",
            queryset=rows(
                TransferReversal.objects.only("id", "refund_id", "gateway_reversal_id").order_by("id"),
                refund.payload_has_transfer_reversals,
            ),
        ),
    )


def _order_payload_load(order: Order) -> None:
    """The order's bags with their merchants, and their SKUs: two queries."""
    prefetch_related_objects(
        [order],
        Prefetch("bags", queryset=Bag.objects.select_related("merchant").order_by("id")),
        Prefetch("bags__skus", queryset=OrderSku.objects.order_by("id")),
    )

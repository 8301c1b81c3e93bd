"""Reads for outbound webhooks. Everything a channel reaches is scoped to its app in the same query,
so another app's id behaves like an id that does not exist (`DoesNotExist`, the API's 404)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Count,
    Exists,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from notifications.models import (
    UNFINISHED_DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from payments.models import TransferReversal
from refunds.models import App, Bag, Order, OrderSku, Refund, RefundError, RefundEvent, RefundSku

STATS_WINDOW = timedelta(days=7)


# --- endpoints -----------------------------------------------------------------------------------


def endpoint_list_for_app(app: App) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(app=app).order_by("id"))


def endpoint_get_for_app(app: App, endpoint_id: int) -> WebhookEndpoint:
    return WebhookEndpoint.objects.get(pk=endpoint_id, app=app)


def endpoints_receiving(app_id: int, event_type: str) -> list[WebhookEndpoint]:
    """The app's endpoints that get a delivery of a new event of this type (a PAUSED one too: its
    delivery waits for the pause to end). Subscriptions are filtered here, not in SQL: an app has a
    handful of endpoints, and JSON containment is not portable to SQLite."""
    endpoints = WebhookEndpoint.objects.filter(app_id=app_id).exclude(status=WebhookEndpoint.Status.DISABLED)
    return [endpoint for endpoint in endpoints.order_by("id") if endpoint.subscribes_to(event_type)]


@dataclass(frozen=True)
class EndpointStats:
    deliveries: int
    attempts: int
    failed_attempts: int

    @property
    def failure_rate(self) -> float:
        return round(self.failed_attempts / self.attempts, 4) if self.attempts else 0.0


def endpoint_stats(endpoint_ids, *, now: datetime | None = None) -> dict[int, EndpointStats]:
    """Per endpoint, over the last 7 days: deliveries, attempts, and attempts that failed (every
    attempt but a delivery's successful last one)."""
    since = (now or timezone.now()) - STATS_WINDOW
    rows = (
        WebhookDelivery.objects.filter(endpoint_id__in=list(endpoint_ids), date_created__gte=since)
        .values("endpoint_id")
        .annotate(
            deliveries=Count("id"),
            attempts=Sum("attempts"),
            succeeded=Count("id", filter=Q(status=DeliveryStatus.SUCCEEDED)),
        )
    )
    return {
        row["endpoint_id"]: EndpointStats(
            deliveries=row["deliveries"],
            attempts=row["attempts"] or 0,
            failed_attempts=max(0, (row["attempts"] or 0) - row["succeeded"]),
        )
        for row in rows
    }


# --- events --------------------------------------------------------------------------------------


def _events_for_api() -> QuerySet[WebhookEvent]:
    return WebhookEvent.objects.select_related("resent_from").prefetch_related(
        Prefetch("deliveries", queryset=WebhookDelivery.objects.order_by("endpoint_id"))
    )


def event_list_for_app(
    app: App, *, event_type: str | None = None, order_id: int | None = None, bag_id: int | None = None
) -> QuerySet[WebhookEvent]:
    events = _events_for_api().filter(app=app)
    if event_type:
        events = events.filter(event_type=event_type)
    if order_id:
        events = events.filter(order_id=order_id)
    if bag_id:
        events = events.filter(bag_id=bag_id)
    return events.order_by("-id")


def event_get_for_app(app: App, event_id) -> WebhookEvent:
    return _events_for_api().get(event_id=event_id, app=app)


# --- the outbox: what an emitter reads under the bag's lock ---------------------------------------


@dataclass(frozen=True)
class Receiver:
    """An endpoint of the app that gets a delivery of each new event it subscribes to (a PAUSED one
    too: its delivery waits for the pause to end)."""

    id: int
    event_types: tuple[str, ...]

    def subscribes_to(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True)
class LockedBag:
    id: int
    order_id: int
    app_id: int
    receivers: tuple[Receiver, ...]
    retry_round: int  # RETRY_REQUESTED events of the refund asked about (0 when none was)


def bag_lock_for_events(bag_id: int, *, retry_rounds_of: int | None = None) -> LockedBag:
    """Lock the bag's row (its events are numbered one writer at a time) and read, in the same
    query, its order and app, the app's endpoints that receive new events, and optionally how often
    a refund was retried.

    The endpoint rows and the retry count come from the statement's start, before any wait for the
    lock: neither is guarded by the bag's lock (a refund's retries by the refund's own lock, which
    its emitter holds). Whatever must be read after the lock is read by `*_for_event` below."""
    bags = Bag.objects.select_for_update(of=("self",)).filter(pk=bag_id)
    if retry_rounds_of is not None:
        retries = (
            RefundEvent.objects.filter(refund_id=retry_rounds_of, kind=RefundEvent.Kind.RETRY_REQUESTED)
            .order_by()
            .values("refund_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        bags = bags.annotate(retry_round=Coalesce(Subquery(retries), 0))
    else:
        bags = bags.annotate(retry_round=Value(0))
    endpoint = "order__app__webhook_endpoints__"
    rows = list(
        bags.values(
            "id",
            "order_id",
            "order__app_id",
            "retry_round",
            f"{endpoint}id",
            f"{endpoint}status",
            f"{endpoint}event_types",
        ).order_by(f"{endpoint}id")
    )
    if not rows:
        raise Bag.DoesNotExist(f"Bag {bag_id} does not exist.")
    first = rows[0]
    return LockedBag(
        id=first["id"],
        order_id=first["order_id"],
        app_id=first["order__app_id"],
        retry_round=first["retry_round"],
        receivers=tuple(
            Receiver(id=row[f"{endpoint}id"], event_types=tuple(row[f"{endpoint}event_types"] or ()))
            for row in rows
            if row[f"{endpoint}id"] is not None and row[f"{endpoint}status"] != WebhookEndpoint.Status.DISABLED
        ),
    )


@dataclass(frozen=True)
class OutboxState:
    last_sequence: int  # of the bag's events (0 when it has none)
    emitted: frozenset[str]  # those of the asked dedupe keys whose event exists


def _with_outbox_state(rows: QuerySet, *, bag_id: int, dedupe_keys: Sequence[str]):
    """The queryset's one row, read together with the bag's outbox state (one query)."""
    flags = {f"outbox_emitted_{position}": key for position, key in enumerate(dedupe_keys)}
    row = rows.annotate(
        outbox_last_sequence=Subquery(
            WebhookEvent.objects.filter(bag_id=bag_id).order_by("-sequence").values("sequence")[:1]
        ),
        **{flag: Exists(WebhookEvent.objects.filter(dedupe_key=key)) for flag, key in flags.items()},
    ).get()
    state = OutboxState(
        last_sequence=row.outbox_last_sequence or 0,
        emitted=frozenset(key for flag, key in flags.items() if getattr(row, flag)),
    )
    return row, state


def outbox_state(bag_id: int, *, dedupe_keys: Sequence[str] = ()) -> OutboxState:
    return _with_outbox_state(Bag.objects.filter(pk=bag_id).only("id"), bag_id=bag_id, dedupe_keys=dedupe_keys)[1]


# --- what the bodies show ------------------------------------------------------------------------


def refund_for_event(refund_id: int, *, bag_id: int, dedupe_keys: Sequence[str]) -> tuple[Refund, OutboxState]:
    """The refund with its bag, order and payment, and the outbox state, in one query. Whether it
    has SKUs, errors and transfer reversals is read along, so `refund_payload_load` queries only
    those it has."""
    refunds = (
        Refund.objects.filter(pk=refund_id)
        .select_related("bag__order__payment_transaction")
        .annotate(
            payload_has_skus=Exists(RefundSku.objects.filter(refund_id=OuterRef("pk"))),
            payload_has_errors=Exists(RefundError.objects.filter(refund_id=OuterRef("pk"))),
            payload_has_transfer_reversals=Exists(TransferReversal.objects.filter(refund_id=OuterRef("pk"))),
        )
    )
    return _with_outbox_state(refunds, bag_id=bag_id, dedupe_keys=dedupe_keys)


def refund_payload_load(refund: Refund) -> None:
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


def order_for_event(order_id: int, *, bag_id: int, dedupe_keys: Sequence[str]) -> tuple[Order, OutboxState]:
    """The order's row and the outbox state of one of its bags, in one query."""
    return _with_outbox_state(Order.objects.filter(pk=order_id), bag_id=bag_id, dedupe_keys=dedupe_keys)


def order_payload_load(order: Order) -> None:
    """The order's bags with their merchants, and their SKUs: two queries."""
    prefetch_related_objects(
        [order],
        Prefetch("bags", queryset=Bag.objects.select_related("merchant").order_by("id")),
        Prefetch("bags__skus", queryset=OrderSku.objects.order_by("id")),
    )


# --- delivery ------------------------------------------------------------------------------------


def _earlier_unfinished_of_same_bag():
    """An unfinished delivery, to the same endpoint, of an earlier event of the same bag."""
    return WebhookDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        event__bag_id=OuterRef("event__bag_id"),
        event__sequence__lt=OuterRef("event__sequence"),
        status__in=UNFINISHED_DELIVERY_STATUSES,
    )


def delivery_is_held_back(delivery: WebhookDelivery) -> bool:
    """True while an earlier event of the delivery's bag is still on its way to the same endpoint."""
    return WebhookDelivery.objects.filter(
        endpoint_id=delivery.endpoint_id,
        event__bag_id=delivery.event.bag_id,
        event__sequence__lt=delivery.event.sequence,
        status__in=UNFINISHED_DELIVERY_STATUSES,
    ).exists()


def deliveries_due(*, now: datetime, republish_before: datetime, limit: int) -> list[int]:
    """CREATED deliveries whose time has come, to ACTIVE endpoints, first of their bag for their
    endpoint, and not handed to the broker recently (a lost message is handed over again later)."""
    return list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.CREATED,
            next_attempt_at__lte=now,
            endpoint__status=WebhookEndpoint.Status.ACTIVE,
        )
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=republish_before))
        .exclude(Exists(_earlier_unfinished_of_same_bag()))
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def delivery_next_of_bag(delivery: WebhookDelivery) -> WebhookDelivery | None:
    """The next CREATED delivery of the same bag to the same endpoint, after `delivery`."""
    return (
        WebhookDelivery.objects.filter(
            endpoint_id=delivery.endpoint_id,
            event__bag_id=delivery.event.bag_id,
            event__sequence__gt=delivery.event.sequence,
            status=DeliveryStatus.CREATED,
        )
        .order_by("event__sequence")
        .first()
    )


def deliveries_stuck(*, claimed_before: datetime) -> QuerySet[WebhookDelivery]:
    """IN_PROGRESS for longer than any attempt can take: the worker died or its result was lost."""
    return WebhookDelivery.objects.filter(status=DeliveryStatus.IN_PROGRESS, claimed_at__lt=claimed_before)


def endpoints_due_to_resume(*, now: datetime) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(status=WebhookEndpoint.Status.PAUSED, paused_until__lte=now)


def delivery_for_attempt(delivery_id: int) -> WebhookDelivery | None:
    return WebhookDelivery.objects.select_related("event__resent_from", "endpoint").filter(pk=delivery_id).first()

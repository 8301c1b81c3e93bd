"""Reads for outbound webhooks. Everything a channel reaches is scoped to its app in the same query,
so another app's id behaves like an id that does not exist (`DoesNotExist`, the API's 404).

Notifications sit below the refund domain and never import it: an app, an order, a bag are ids
(or model instances passed in, duck-typed), and the one refunds table read here, the bag's row that
orders a bag's events, is reached through `WebhookEvent.bag`'s string reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db.models import (
    Count,
    Exists,
    Expression,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.utils import timezone

from notifications.models import (
    UNFINISHED_DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

STATS_WINDOW = timedelta(days=7)


class ChannelApp(Protocol):
    """The channel's app (refunds.App), as far as notifications need it."""

    pk: Any


# --- endpoints -----------------------------------------------------------------------------------


def endpoint_list_for_app(app: ChannelApp) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(app=app).order_by("id"))


def endpoint_get_for_app(app: ChannelApp, endpoint_id: int) -> WebhookEndpoint:
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
    app: ChannelApp, *, event_type: str | None = None, order_id: int | None = None, bag_id: int | None = None
) -> QuerySet[WebhookEvent]:
    events = _events_for_api().filter(app=app)
    if event_type:
        events = events.filter(event_type=event_type)
    if order_id:
        events = events.filter(order_id=order_id)
    if bag_id:
        events = events.filter(bag_id=bag_id)
    return events.order_by("-id")


def event_get_for_app(app: ChannelApp, event_id) -> WebhookEvent:
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


def _bag_model() -> type[Model]:
    """The bag a webhook event belongs to: refunds.Bag, through the string reference of the FK."""
    return WebhookEvent._meta.get_field("bag").related_model


@dataclass(frozen=True)
class LockedBag:
    """The bag's row is locked: its events can be numbered (`OutboxState.last_sequence` + 1, ...)."""

    id: int
    order_id: int
    app_id: int
    receivers: tuple[Receiver, ...]
    reads: Mapping[str, Any] = field(default_factory=dict)  # the caller's `reads`, by name


def bag_lock_for_events(bag_id: int, *, reads: Mapping[str, Expression] | None = None) -> LockedBag:
    """Lock the bag's row (its events are numbered one writer at a time) and read, in the same
    query, its order and app, the app's endpoints that receive new events, and the caller's `reads`
    (expressions over the bag's row, e.g. how often a refund was retried).

    The endpoint rows and the reads come from the statement's start, before any wait for the lock:
    none of them is guarded by the bag's lock (a refund's retries by the refund's own lock, which
    its emitter holds). Whatever must be read after the lock is read by `outbox_state_with`."""
    reads = dict(reads or {})
    bags = _bag_model().objects.select_for_update(of=("self",)).filter(pk=bag_id).annotate(**reads)
    endpoint = "order__app__webhook_endpoints__"
    rows = list(
        bags.values(
            "id",
            "order_id",
            "order__app_id",
            *reads,
            f"{endpoint}id",
            f"{endpoint}status",
            f"{endpoint}event_types",
        ).order_by(f"{endpoint}id")
    )
    if not rows:
        raise _bag_model().DoesNotExist(f"Bag {bag_id} does not exist.")
    first = rows[0]
    return LockedBag(
        id=first["id"],
        order_id=first["order_id"],
        app_id=first["order__app_id"],
        reads={name: first[name] for name in reads},
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


def outbox_state_with(rows: QuerySet, *, bag_id: int, dedupe_keys: Sequence[str]) -> tuple[Any, OutboxState]:
    """The queryset's one row (the caller's: e.g. the root of an event's body), read together with
    the bag's outbox state: one query."""
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
    bags = _bag_model().objects.filter(pk=bag_id).only("id")
    return outbox_state_with(bags, bag_id=bag_id, dedupe_keys=dedupe_keys)[1]


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
    """True while an earlier event of the delivery's bag is still on its way to the same endpoint
    (never for a TEST event: it has no bag)."""
    if delivery.event.bag_id is None:
        return False
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
    if delivery.event.bag_id is None:  # a TEST event: nothing waits behind it
        return None
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

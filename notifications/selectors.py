"""Reads for outbound webhooks. Everything a channel reaches is scoped to its app in the same query,
so another app's id behaves like an id that does not exist (`DoesNotExist`, the API's 404)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from notifications.models import (
    UNFINISHED_DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from payments.models import TransferReversal
from refunds.models import App, Bag, Order, OrderSku, Refund

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


def event_exists(dedupe_key: str) -> bool:
    return WebhookEvent.objects.filter(dedupe_key=dedupe_key).exists()


def bag_last_sequence(bag_id: int) -> int:
    last = WebhookEvent.objects.filter(bag_id=bag_id).order_by("-sequence").values_list("sequence", flat=True).first()
    return last or 0


# --- what the bodies show ------------------------------------------------------------------------


def order_for_payload(order_id: int) -> Order:
    """The order with its bags, their merchants and SKUs, in four queries."""
    return Order.objects.prefetch_related(
        Prefetch("bags", queryset=Bag.objects.select_related("merchant").order_by("id")),
        Prefetch("bags__skus", queryset=OrderSku.objects.order_by("id")),
    ).get(pk=order_id)


def refund_for_payload(refund_id: int) -> Refund:
    """The refund with everything the Order Refund object shows (as the refunds API loads it)."""
    return (
        Refund.objects.select_related("bag__order__payment_transaction")
        .prefetch_related(
            "skus",
            "errors",
            Prefetch(
                "transfer_reversals",
                queryset=TransferReversal.objects.only("id", "refund_id", "gateway_reversal_id").order_by("id"),
            ),
        )
        .get(pk=refund_id)
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

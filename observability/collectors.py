"""Metrics read at scrape time from what already holds the truth: the database (refunds, inbound
events, deliveries) and the broker (queue lengths). Counting these in-process would be wrong across
processes and lost on restart; each scrape costs a handful of grouped queries on indexed columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from notifications.models import DeliveryStatus, WebhookDelivery
from platforms.models import InboundEvent
from refunds.models import Refund, RefundStatus
from refunds.selectors import refunds_stuck_queryset
from violet_refunds import queues

RECENT = timedelta(hours=24)
OPEN_INBOUND_STATUSES = (
    InboundEvent.Status.RECEIVED,
    InboundEvent.Status.RETRYING,
    InboundEvent.Status.AWAITING_ORDER,
)
PROCESSING_SECONDS_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600)
# kombu's Redis transport keeps each priority level of a queue in its own list: "<queue>" and
# "<queue>\x06\x16<priority>" for the default priority steps.
_KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)


def refunds_by_status() -> Metric:
    metric = GaugeMetricFamily("violet_refunds", "Refunds by status.", labels=["status"])
    counts = dict(Refund.objects.order_by().values_list("status").annotate(count=Count("pk")))
    for status in RefundStatus.values:
        metric.add_metric([status], counts.get(status, 0))
    return metric


def refunds_needing_attention() -> list[Metric]:
    stuck = GaugeMetricFamily(
        "violet_refunds_stuck",
        "PROCESSING refunds whose next pass is overdue by REFUND_STUCK_AFTER_SECONDS (the sweep re-enqueues them).",
    )
    stuck.add_metric([], refunds_stuck_queryset().count())
    failed = GaugeMetricFamily(
        "violet_refunds_failed_last_24h",
        "Refunds that ended FAILED or PARTIALLY_COMPLETED in the last 24 h (an operator's triage list).",
        labels=["status"],
    )
    since = timezone.now() - RECENT
    counts = dict(
        Refund.objects.filter(
            status__in=[RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED], date_last_modified__gte=since
        )
        .order_by()
        .values_list("status")
        .annotate(count=Count("pk"))
    )
    for status in (RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED):
        failed.add_metric([status], counts.get(status, 0))
    return [stuck, failed]


def refund_processing_time() -> Metric:
    """Recorded -> COMPLETED / PARTIALLY_COMPLETED (date_completed), refunds finished in the last 24 h."""
    duration = ExpressionWrapper(F("date_completed") - F("date_created"), output_field=DurationField())
    since = timezone.now() - RECENT
    finished = Refund.objects.filter(date_completed__gte=since).annotate(duration=duration)
    aggregates = {
        f"le_{bucket}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bucket)))
        for bucket in PROCESSING_SECONDS_BUCKETS
    }
    row = finished.aggregate(total=Count("pk"), seconds=Sum("duration"), **aggregates)
    metric = HistogramMetricFamily(
        "violet_refund_processing_seconds",
        "Time from recording a refund to COMPLETED or PARTIALLY_COMPLETED, refunds finished in the last 24 h.",
    )
    buckets = [(str(float(bucket)), row[f"le_{bucket}"]) for bucket in PROCESSING_SECONDS_BUCKETS]
    buckets.append(("+Inf", row["total"]))
    total_seconds = row["seconds"].total_seconds() if row["seconds"] is not None else 0.0
    metric.add_metric([], buckets, total_seconds)
    return metric


def inbound_events() -> list[Metric]:
    recent = GaugeMetricFamily(
        "violet_inbound_events_last_24h",
        "Platform webhook events (and polled / parity signals) stored in the last 24 h, by platform and outcome.",
        labels=["platform", "status"],
    )
    since = timezone.now() - RECENT
    rows = (
        InboundEvent.objects.filter(date_created__gte=since)
        .order_by()
        .values_list("platform", "status")
        .annotate(count=Count("pk"))
    )
    for platform, status, count in rows:
        recent.add_metric([platform, status], count)
    open_events = GaugeMetricFamily(
        "violet_inbound_events_open",
        "Inbound events not settled yet (RECEIVED, RETRYING, AWAITING_ORDER), by platform and status.",
        labels=["platform", "status"],
    )
    rows = (
        InboundEvent.objects.filter(status__in=OPEN_INBOUND_STATUSES)
        .order_by()
        .values_list("platform", "status")
        .annotate(count=Count("pk"))
    )
    for platform, status, count in rows:
        open_events.add_metric([platform, status], count)
    return [recent, open_events]


def webhook_deliveries() -> list[Metric]:
    now = timezone.now()
    due = GaugeMetricFamily(
        "violet_webhook_deliveries_due",
        "Outbound deliveries waiting to be attempted now (CREATED, next attempt reached), per endpoint.",
        labels=["endpoint_id"],
    )
    failing = GaugeMetricFamily(
        "violet_webhook_deliveries_failing",
        "Outbound deliveries whose last attempt failed and that wait for a retry, per endpoint.",
        labels=["endpoint_id"],
    )
    failed = GaugeMetricFamily(
        "violet_webhook_deliveries_failed_last_24h",
        "Outbound deliveries that ran out of attempts (FAILED) in the last 24 h, per endpoint.",
        labels=["endpoint_id"],
    )
    rows = (
        WebhookDelivery.objects.filter(
            Q(status=DeliveryStatus.CREATED) | Q(status=DeliveryStatus.FAILED, date_finished__gte=now - RECENT)
        )
        .order_by()
        .values_list("endpoint_id")
        .annotate(
            due=Count(
                "pk",
                filter=Q(status=DeliveryStatus.CREATED)
                & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)),
            ),
            failing=Count("pk", filter=Q(status=DeliveryStatus.CREATED, attempts__gt=0)),
            failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        )
    )
    for endpoint_id, due_count, failing_count, failed_count in rows:
        due.add_metric([str(endpoint_id)], due_count)
        failing.add_metric([str(endpoint_id)], failing_count)
        failed.add_metric([str(endpoint_id)], failed_count)
    return [due, failing, failed]


def queue_lengths() -> list[Metric]:
    metric = GaugeMetricFamily(
        "violet_celery_queue_length", "Messages waiting in each Celery queue (Redis).", labels=["queue"]
    )
    up = GaugeMetricFamily("violet_broker_up", "1 when the broker answered this scrape, 0 when it did not.")
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://")) or settings.CELERY_TASK_ALWAYS_EAGER:
        return [metric]  # no broker: tasks run in-process
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            pipe = client.pipeline()
            for queue in queues.QUEUES:
                pipe.llen(queue)
                for step in _KOMBU_PRIORITY_STEPS:
                    pipe.llen(f"{queue}{_KOMBU_PRIORITY_SEPARATOR}{step}")
            lengths = pipe.execute()
    except redis.RedisError:
        up.add_metric([], 0)
        return [metric, up]
    per_queue = 1 + len(_KOMBU_PRIORITY_STEPS)
    for index, queue in enumerate(queues.QUEUES):
        metric.add_metric([queue], sum(lengths[index * per_queue : (index + 1) * per_queue]))
    up.add_metric([], 1)
    return [metric, up]


class DatabaseCollector(Collector):
    """Registered in a registry of its own for each scrape (observability.views.metrics)."""

    def collect(self) -> Iterator[Metric]:
        yield refunds_by_status()
        yield from refunds_needing_attention()
        yield refund_processing_time()
        yield from inbound_events()
        yield from webhook_deliveries()
        yield from queue_lengths()

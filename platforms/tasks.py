"""Celery entry points for platform signals; the work is in platforms.services.

Each task imports the service inside itself (platforms.services imports this module to enqueue)."""

import logging

from celery import shared_task
from django.utils import timezone

from violet_refunds import retrying

logger = logging.getLogger(__name__)

# When not even the outcome could be written (the database is unreachable), the task retries on its
# own this many times; after that the event keeps its state and beat's requeue job finds it.
UNRECORDED_MAX_RETRIES = 10
# Without a broker (development, tests) Celery runs a retry at once, ignoring its countdown; the
# retry then processes the event at once too, at most this many times (there is no beat either).
EAGER_MAX_RETRIES = 3


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def process_inbound_event(self, event_id: int) -> str:
    """Turn one stored platform event into refunds.

    A transient error (database, broker, platform timeout/5xx/429) leaves the event RETRYING with
    its `next_attempt_at`; this task schedules itself for that time (a countdown always below the
    broker's visibility timeout). The event's retry horizon, not a retry count, ends the retries
    (the event then ends FAILED), so `max_retries` is unlimited here. If this retry message is lost
    (worker killed, Redis down), beat's requeue job sends another. A copy arriving early, or for an
    event already settled, does nothing."""
    from platforms import services

    eager = bool(self.request.is_eager)
    retries = self.request.retries
    try:
        result = services.event_process(event_id, only_if_due=not (eager and retries))
    except Exception as exc:
        # Not even the outcome could be recorded: the event keeps its state (RECEIVED or RETRYING),
        # which the requeue job also finds. Start the next try on a fresh connection.
        if not retrying.processing_error_is_transient(exc) or retries >= UNRECORDED_MAX_RETRIES:
            raise
        services.database_connections_reset()
        countdown = retrying.event_retry_delay(retries + 1).total_seconds()
        logger.warning("Inbound event %s: outcome not recorded (%s); retrying in %.0f s", event_id, exc, countdown)
        raise self.retry(countdown=countdown, exc=exc) from exc
    if result is None:
        return "MISSING"
    if result.skipped:
        logger.info("Inbound event %s: nothing to do (%s)", event_id, result.skipped)
        return "SKIPPED"
    if result.retrying and result.event.next_attempt_at is not None and not (eager and retries >= EAGER_MAX_RETRIES):
        countdown = max(0.0, (result.event.next_attempt_at - timezone.now()).total_seconds())
        raise self.retry(countdown=countdown)
    return result.event.status


@shared_task(ignore_result=True)
def poll_platform_orders() -> int:
    """Beat: poll the platforms without refund webhooks (SFCC Option 1). Returns events created."""
    from platforms import services

    results = services.platform_orders_poll()
    return sum(result.events_created for result in results)


@shared_task(ignore_result=True)
def requeue_received_events() -> int:
    """Beat: re-enqueue events whose message was lost (never processed, or a retry overdue)."""
    from platforms import services

    return len(services.events_requeue())


@shared_task(ignore_result=True)
def process_events_awaiting_bag(bag_id: int) -> int:
    """A bag appeared with a platform order id: process the events that were awaiting it."""
    from platforms import services

    return sum(services.events_awaiting_bag_process(bag_id).values())


@shared_task(ignore_result=True)
def sweep_events_awaiting_order() -> int:
    """Beat: events awaiting an order that is now a bag are processed; those past the expiry settle
    (IGNORED or FAILED: INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS)."""
    from platforms import services

    result = services.events_awaiting_order_sweep()
    return len(result.enqueued) + len(result.expired)


@shared_task(ignore_result=True)
def check_platform_parity() -> int:
    """Beat: read the platform's state of bags (recent ones often, every open one slowly) and record
    what their webhooks or polls never told us. Returns refunds found."""
    from platforms import parity

    return parity.bags_parity_check().refunds_found


@shared_task(ignore_result=True)
def sync_store_subscriptions(connection_id: int) -> str:
    """A store was connected or its secret replaced: make its webhook subscriptions as declared."""
    from platforms.subscriptions import services

    result = services.subscriptions_sync_by_id(connection_id)
    return result.summary() if result is not None else "MISSING"


@shared_task(ignore_result=True)
def sync_due_store_subscriptions() -> int:
    """Beat: the stores whose subscriptions were last compared a day ago (a bounded batch per run).
    Returns the write calls made."""
    from platforms.subscriptions import services

    return sum(result.writes for result in services.subscriptions_sync_due())


@shared_task(ignore_result=True)
def discover_oms_refunds() -> int:
    """Beat: read each connected order management system's refunds since its cursor (issue #25).
    Returns events created."""
    from platforms.oms import discovery

    return sum(run.events_created for run in discovery.oms_refunds_discover())


@shared_task(ignore_result=True)
def process_privacy_request(request_id: int) -> str:
    """Do one privacy request (Shopify compliance webhook) recorded by the receiver."""
    from platforms.privacy import compliance

    request = compliance.privacy_request_process(request_id)
    return request.state if request is not None else "MISSING"


@shared_task(ignore_result=True)
def apply_data_retention() -> str:
    """Beat, daily: retention (docs/privacy.md), then any privacy request whose message was lost."""
    from platforms.privacy import compliance, retention

    result = retention.retention_apply()
    compliance.privacy_requests_open_process()
    logger.info("%s", result.describe())
    return result.describe()


@shared_task(acks_late=True, ignore_result=True)
def forward_refund(refund_id: int) -> None:
    """Send a channel refund to the merchant's platform (platforms.forwarding). Delivered at least
    once: a copy finds the forwarding locked, settled or not yet due and does nothing."""
    from platforms.forwarding import refund_forward

    countdown = refund_forward(refund_id=refund_id)
    if countdown is not None:
        forward_refund.apply_async((refund_id,), countdown=countdown)

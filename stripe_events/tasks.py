"""Celery entry points for Stripe's events; the work is in stripe_events.services.

Each task imports the service inside itself (stripe_events.services imports this module to enqueue)."""

import logging

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)

# Without a broker (development, tests) a retry runs at once, ignoring its countdown: at most this often.
EAGER_MAX_RETRIES = 3


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def process_stripe_event(self, event_id: int) -> str:
    """Process one stored Stripe event. A transient error leaves it RETRYING with its next attempt,
    for which this task schedules itself (beat's requeue sends another copy if that message is lost);
    a copy arriving early, or for an event already settled, does nothing."""
    from stripe_events import services

    eager = bool(self.request.is_eager)
    result = services.stripe_event_process(event_id, only_if_due=not (eager and self.request.retries))
    if result is None:
        return "MISSING"
    if result.skipped:
        logger.info("Stripe event %s: nothing to do (%s)", event_id, result.skipped)
        return "SKIPPED"
    if (
        result.retrying
        and result.event.next_attempt_at is not None
        and not (eager and self.request.retries >= EAGER_MAX_RETRIES)
    ):
        countdown = max(0.0, (result.event.next_attempt_at - timezone.now()).total_seconds())
        raise self.retry(countdown=countdown)
    return result.event.status


@shared_task(ignore_result=True)
def requeue_stripe_events() -> int:
    """Beat: re-enqueue Stripe events whose processing message was lost."""
    from stripe_events import services

    return len(services.stripe_events_requeue())

"""Celery entry points for platform signals; the work is in platforms.services.

Each task imports the service inside itself (platforms.services imports this module to enqueue)."""

import logging
import random

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)

PROCESS_MAX_RETRIES = 8
PROCESS_BACKOFF_BASE_SECONDS = 30
PROCESS_BACKOFF_MAX_SECONDS = 1800


def retry_countdown(retries: int) -> float:
    """Exponential backoff with jitter, always below the broker's visibility timeout (a longer
    countdown would make Redis redeliver the message while it still waits)."""
    ceiling = min(PROCESS_BACKOFF_MAX_SECONDS, settings.CELERY_VISIBILITY_TIMEOUT * 0.8)
    delay = min(PROCESS_BACKOFF_BASE_SECONDS * (2**retries), ceiling)
    return delay * random.uniform(0.5, 1.0)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=PROCESS_MAX_RETRIES)
def process_inbound_event(self, event_id: int) -> str:
    """Turn one stored platform event into refunds. Transient platform errors (timeout, 5xx) retry
    with backoff; the event shows FAILED with the error meanwhile, and PROCESSED once a retry works."""
    from platforms import services

    result = services.event_process(event_id)
    if result is None:
        return "MISSING"
    if result.retryable and self.request.retries < self.max_retries:
        raise self.retry(countdown=retry_countdown(self.request.retries))
    return result.event.status


@shared_task(ignore_result=True)
def poll_platform_orders() -> int:
    """Beat: poll the platforms without refund webhooks (SFCC Option 1). Returns events created."""
    from platforms import services

    results = services.platform_orders_poll()
    return sum(result.events_created for result in results)


@shared_task(ignore_result=True)
def requeue_received_events() -> int:
    """Beat: re-enqueue events stored but never processed (their message was lost)."""
    from platforms import services

    return len(services.events_requeue_received())

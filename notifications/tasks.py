"""Celery tasks: thin callers of notifications.services.delivery, imported inside each task (the
service module imports this one at module level)."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    """One attempt of one delivery. Delivered at least once: the claim makes a repeat a no-op, and
    a failed attempt is retried through `next_attempt_at` and the relay, never a long countdown."""
    from notifications.services import delivery

    outcome = delivery.delivery_attempt(delivery_id=delivery_id)
    logger.info("webhook delivery %s: %s %s", delivery_id, outcome.status, outcome.detail)
    return outcome.status


@shared_task(ignore_result=True)
def relay_webhook_deliveries() -> int:
    """Beat: hand due deliveries to the broker, resume endpoints whose pause ended, recover attempts
    whose worker died. The database is the queue of record; a lost message costs a relay period."""
    from notifications.services import delivery

    result = delivery.deliveries_relay()
    if result.published or result.resumed or result.recovered:
        logger.info(
            "webhook relay: %d published, %d webhooks resumed, %d interrupted attempts recovered",
            result.published,
            result.resumed,
            result.recovered,
        )
    return result.published

"""Celery tasks: thin callers of refunds.services.

Convention (every app): the service module imports its tasks at module level to enqueue them; a task
imports its service inside the task function, so importing the tasks (Celery autodiscovery) never
imports the services.
"""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def process_refund(refund_id: int, due: str | None = None, database_retries: int = 0) -> str:
    """Process one refund. Delivered at least once; refund_process makes repeats harmless, and a
    copy arriving before the refund's next_attempt_at (unless it is the one scheduled for that time,
    `due`) does nothing at all. A database error (connection refused, too many connections, server
    restarting, backend terminated) is retried like a transient Stripe error: this task sends its own
    next pass with backoff (`database_retries` counts them), never leaving the refund to the sweep."""
    from django.db import InterfaceError, OperationalError

    from refunds.services import refund_process
    from refunds.services.engine import DatabaseRetry, database_retry_plan

    try:
        outcome = refund_process(refund_id=refund_id, as_delivery=True, due=due)
    except (OperationalError, InterfaceError) as exc:
        plan: DatabaseRetry | None = database_retry_plan(refund_id, exc, due=due, retries=database_retries)
        if plan is None:
            return "DATABASE_ERROR"
        retry = {"database_retries": database_retries + 1} | ({"due": plan.due} if plan.due else {})
        process_refund.apply_async((refund_id,), retry, countdown=plan.countdown)
        return "DATABASE_RETRY"
    if outcome.retry_in is not None:
        # Our own next pass with the same (stable) idempotency keys; countdown < visibility timeout.
        scheduled = {"due": outcome.due.isoformat()} if outcome.due else {}
        process_refund.apply_async((refund_id,), scheduled, countdown=outcome.retry_in)
    logger.info("refund %s: %s %s", refund_id, outcome.status, outcome.detail)
    return outcome.status


@shared_task(ignore_result=True)
def sweep_stuck_refunds() -> int:
    """Beat: re-enqueue refunds stuck in PROCESSING (lost message, dead worker)."""
    from refunds.services import refund_sweep_stuck

    requeued = refund_sweep_stuck()
    if requeued:
        logger.warning("re-enqueued %d stuck refunds: %s", len(requeued), requeued[:20])
    return len(requeued)


@shared_task(ignore_result=True)
def reconcile_refunds_nightly() -> int:
    """Beat, nightly: compare the last RECONCILIATION_DAYS days of refunds with Stripe; each difference
    opens one operator finding. Returns the findings opened."""
    from refunds.reconciliation import StripeUnavailable
    from refunds.services.findings import findings_from_reconciliation

    try:
        result = findings_from_reconciliation()
    except StripeUnavailable as exc:
        logger.error("Nightly reconciliation: Stripe could not be read, nothing concluded: %s", exc)
        return 0
    if result.opened:
        logger.warning(
            "Nightly reconciliation (%s): %d new finding(s), %d seen before",
            result.report.scope,
            result.opened,
            result.seen_again,
        )
    return result.opened

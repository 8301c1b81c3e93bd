"""The sandbox's own beat task (scheduled only while the sandbox is in use, see settings)."""

from celery import shared_task

from .lifecycle import sweep


@shared_task(ignore_result=True)
def sweep_sandbox() -> dict:
    """Settle refunds whose time came on the sandbox clock and retry failed webhook deliveries."""
    result = sweep()
    return {"refunds_settled": result.refunds_settled, "deliveries_retried": result.deliveries_retried}

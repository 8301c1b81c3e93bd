"""The Celery queues, one per role (no Django here: the soak and prod-smoke harnesses read it before
Django is configured). Routing of each task: CELERY_TASK_ROUTES in settings.

- refunds: Stripe money movement (process_refund), Stripe's own events, the nightly reconciliation.
- platforms: inbound platform events, privacy requests, and the beat jobs that call platform APIs or
  run long (SFCC polling, OMS discovery, subscription sync, the parity check: minutes of rate-limited
  reads; the daily retention).
- notifications: outbound webhook attempts (each may wait NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS on a
  channel's server).
- periodic: beat's short database sweeps, which must never wait behind the others.
"""

REFUNDS = "refunds"
PLATFORMS = "platforms"
NOTIFICATIONS = "notifications"
PERIODIC = "periodic"

QUEUES = (REFUNDS, PLATFORMS, NOTIFICATIONS, PERIODIC)
# `-Q` of a worker that consumes every queue (development, the soak's chaos nodes).
ALL_QUEUES = ",".join(QUEUES)


def worker_arguments(queue: str) -> list[str]:
    """The arguments after `celery` of one role's worker (Procfile, README, make prod-smoke)."""
    return ["-A", "violet_refunds", "worker", "-Q", queue, "-n", f"{queue}@%h"]

"""Automatic retries of stored inbound events, shared by the two apps that receive them: platform
webhooks and polls (`platforms.InboundEvent`) and Stripe's own events (`stripe_events.StripeEvent`).
The apps are siblings in the layers contract (neither may import the other), so what they share
lives here: which errors are worth a retry, the backoff and the retry horizon (the
INBOUND_EVENT_RETRY_* settings), the due check of a task copy, the requeue of events whose message
was lost, the one write of an outcome, and the count of runs that died without one (a poison event,
INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME). docs/reliability.md, rule 10.

Both models carry the same fields for it: `status` (RECEIVED, PROCESSED, IGNORED, RETRYING, FAILED;
the platforms' AWAITING_ORDER is theirs alone), `outcome`, `error`, `traceback`, `attempts`,
`claims_without_outcome`, `processed_at`, `next_attempt_at`, `retrying_since`, `retries`,
`requeued_at`, `date_created`.

Transient errors are known by type (the database, the broker, the network) or by the `transient`
attribute convention: an exception class with `transient = True` is worth a retry (platform client
errors for timeouts, 5xx and 429; Stripe's `TransientGatewayError`; a refund busy in the engine), so
this module needs to know none of the apps' error classes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import kombu.exceptions
import redis.exceptions
import requests
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.models import F, Q, QuerySet
from django.utils import timezone

# The statuses the shared machinery reads and writes (both models' Status choices use these values).
RECEIVED = "RECEIVED"
PROCESSED = "PROCESSED"
IGNORED = "IGNORED"
RETRYING = "RETRYING"
FAILED = "FAILED"

# A task message may run this much before the event's next_attempt_at and still count as due (the
# countdown is computed on one host, the check made on another: clocks differ a little).
DUE_TOLERANCE = timedelta(seconds=2)
# Beat re-enqueues at most this many events per run (the rest on the next run).
REQUEUE_BATCH_SIZE = 500
# InboundEvent or StripeEvent (both carry the fields named in the module docstring).
EventT = TypeVar("EventT")


# --- transient or permanent ---------------------------------------------------------------------

# Worth trying again unchanged: the database or the broker was unreachable or dropped us (a server
# restart terminates every backend: "terminating connection due to administrator command"), a
# network call timed out, or the error says so itself (`transient = True`). Anything else (bad data,
# a bug, a 4xx from a platform, a permanent Stripe refusal) is permanent: retrying changes nothing.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,  # django.db: connection lost, server restarting, deadlock, statement timeout
    InterfaceError,  # django.db: the connection is already closed
    kombu.exceptions.OperationalError,  # the broker, when enqueueing the refund's processing
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


def processing_error_is_transient(exc: BaseException) -> bool:
    """True when the error (or an error it was raised from) is worth an automatic retry."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TRANSIENT_ERRORS) or getattr(current, "transient", False) is True:
            return True
        current = current.__cause__
    return False


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError)) or isinstance(
        exc.__cause__, (OperationalError, InterfaceError)
    )


def database_connections_reset() -> None:
    """Close this thread's database connections after a database error, so the next query opens a
    fresh one: after a server restart or a terminated backend the old connection is dead, and Django
    checks health only when a task starts (CONN_HEALTH_CHECKS), not between queries of one task.
    A connection inside a transaction someone else holds (a test's) is left alone: closing it there
    would only mark that transaction for rollback."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


# --- backoff and horizon ------------------------------------------------------------------------


def event_retry_delay(retries: int) -> timedelta:
    """The wait after the n-th transient failure of a streak: INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS
    x 2^(n-1), capped at INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS and always below the broker's
    visibility timeout (a longer countdown would make Redis deliver the retry twice), with jitter
    (50-100 %) so events failed by one outage do not all come back at once."""
    cap = max(
        1,
        min(settings.INBOUND_EVENT_RETRY_BACKOFF_MAX_SECONDS, settings.CELERY_VISIBILITY_TIMEOUT - 60),
    )
    delay = min(settings.INBOUND_EVENT_RETRY_BACKOFF_BASE_SECONDS * 2 ** max(retries - 1, 0), cap)
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))


def event_retry_horizon() -> timedelta:
    return timedelta(seconds=settings.INBOUND_EVENT_RETRY_HORIZON_SECONDS)


def event_requeue_after() -> timedelta:
    return timedelta(seconds=settings.INBOUND_EVENT_REQUEUE_AFTER_SECONDS)


def duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@dataclass(frozen=True)
class RetryDecision:
    """What a transient failure makes of an event: RETRYING at `next_attempt_at`, or FAILED (for an
    operator) once the streak is past the horizon; the retry fields to store with it."""

    status: str
    outcome: str
    next_attempt_at: datetime | None = None
    retrying_since: datetime | None = None
    retries: int = 0


def transient_failure_decide(event: Any, *, now: datetime | None = None) -> RetryDecision:
    """The streak goes on while the event is RETRYING (a replay of a FAILED event starts a new one,
    with a new horizon)."""
    now = now or timezone.now()
    streaking = event.status == RETRYING and event.retrying_since is not None
    since = event.retrying_since if streaking and event.retrying_since else now
    retries = (event.retries if streaking else 0) + 1
    if now - since >= event_retry_horizon():
        return RetryDecision(
            FAILED,
            outcome=f"Transient errors for {duration_text(now - since)} ({retries} failures in a row since "
            f"{since:%Y-%m-%d %H:%M:%S} UTC): automatic retries stopped at the retry horizon. Replay the event "
            "once the cause is fixed.",
        )
    next_attempt_at = now + event_retry_delay(retries)
    return RetryDecision(
        RETRYING,
        outcome=(
            f"Transient error (failure {retries} in a row): retrying automatically at "
            f"{next_attempt_at:%Y-%m-%d %H:%M:%S} UTC, until {since + event_retry_horizon():%Y-%m-%d %H:%M:%S} UTC."
        ),
        next_attempt_at=next_attempt_at,
        retrying_since=since,
        retries=retries,
    )


def transient_failure_set(event: Any, *, error: str, traceback_text: str) -> list[str]:
    """Set the outcome of a transient failure (transient_failure_decide); returns the fields to save."""
    decision = transient_failure_decide(event)
    return outcome_set(
        event,
        decision.status,
        outcome=decision.outcome,
        error=error,
        traceback_text=traceback_text,
        next_attempt_at=decision.next_attempt_at,
        retrying_since=decision.retrying_since,
        retries=decision.retries,
    )


@dataclass(frozen=True)
class ProcessingResult(Generic[EventT]):
    """What one processing run of an event did."""

    event: EventT
    # Why nothing was done, when nothing was: a task copy for an event already settled, or early.
    skipped: str = ""

    @property
    def retrying(self) -> bool:
        """A transient error: processing runs again at `event.next_attempt_at`."""
        return getattr(self.event, "status", None) == RETRYING


# --- due or not, lost or not --------------------------------------------------------------------


def not_due_reason(event: Any, now: datetime) -> str:
    """Why a task copy leaves the event alone ("" when it is due): settled (PROCESSED, IGNORED),
    FAILED (waits for an operator), or RETRYING before its next attempt (a copy arriving early)."""
    if event.status in (PROCESSED, IGNORED):
        return f"already {event.status}"
    if event.status == FAILED:
        return "FAILED: waits for an operator's replay"
    if event.status == RETRYING and event.next_attempt_at is not None and event.next_attempt_at > now + DUE_TOLERANCE:
        return f"not due before {event.next_attempt_at.isoformat()}"
    return ""


def events_lost(events: QuerySet, *, cutoff: datetime) -> QuerySet:
    """Events whose processing message was lost: RECEIVED since before `cutoff`, or RETRYING with a
    next attempt due before `cutoff`; not re-enqueued since `cutoff` either. Oldest first."""
    lost = Q(status=RECEIVED, date_created__lt=cutoff) | Q(status=RETRYING, next_attempt_at__lt=cutoff)
    return (
        events.filter(lost)
        .filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff))
        .order_by("date_created", "pk")
    )


def events_requeue_marked(events: QuerySet, *, now: datetime, enqueue: Callable[[int], None]) -> list[int]:
    """Mark the first REQUEUE_BATCH_SIZE of `events` re-enqueued now (so a backlog in the queue does
    not get a copy per beat run) and enqueue each; returns their ids."""
    ids = list(events.values_list("pk", flat=True)[:REQUEUE_BATCH_SIZE])
    if ids:
        events.model.objects.filter(pk__in=ids).update(requeued_at=now)
        for event_id in ids:
            enqueue(event_id)
    return ids


# --- poison events: runs that died without an outcome -------------------------------------------


def run_claim(event: Any) -> int:
    """Count this run before it starts (committed at once outside a transaction, so a run that kills
    its worker leaves the count behind); the outcome written at the end clears it (outcome_set).
    Returns the runs started since the last outcome, this one included."""
    rows = type(event).objects.filter(pk=event.pk)
    rows.update(attempts=F("attempts") + 1, claims_without_outcome=F("claims_without_outcome") + 1)
    claims = rows.values_list("claims_without_outcome", flat=True).first() or 0
    event.claims_without_outcome = claims
    return claims


def claims_exhausted(claims: int) -> bool:
    """True when the runs before this one all died: this run must not process the event."""
    return claims > settings.INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME


@dataclass(frozen=True)
class PoisonedOutcome:
    outcome: str
    error: str


def poisoned_outcome(died: int) -> PoisonedOutcome:
    """The FAILED outcome of an event whose last `died` runs started and never recorded an outcome."""
    return PoisonedOutcome(
        outcome=(
            f"Processing started {died} times without ever recording an outcome: the worker died in each run "
            "(out of memory, killed, a hard time limit), so the event is not run again automatically "
            f"(INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME={settings.INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME}). "
            "Look for the crash in the worker logs around its last attempt, fix the cause, then replay the event."
        ),
        error=f"{died} processing runs without an outcome (worker died)",
    )


# --- the outcome --------------------------------------------------------------------------------


def outcome_set(
    event: Any,
    status: str,
    *,
    outcome: str,
    error: str = "",
    traceback_text: str = "",
    next_attempt_at: datetime | None = None,
    retrying_since: datetime | None = None,
    retries: int = 0,
) -> list[str]:
    """Set an event's outcome (the retry fields are cleared unless a retry is pending, and the count
    of runs without an outcome, since this run did not die); returns the fields to save."""
    event.status = status
    event.outcome = outcome
    event.error = error
    event.traceback = traceback_text
    event.processed_at = timezone.now()
    event.next_attempt_at = next_attempt_at
    event.retrying_since = retrying_since
    event.retries = retries
    event.claims_without_outcome = 0
    return [
        "claims_without_outcome",
        "status",
        "outcome",
        "error",
        "traceback",
        "processed_at",
        "next_attempt_at",
        "retrying_since",
        "retries",
        "date_last_modified",
    ]

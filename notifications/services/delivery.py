"""Delivery of outbound webhooks (docs/violet-api.md, Outbound webhooks, docs/reliability.md).

After commit the new deliveries are handed to Celery; a beat task (`relay_webhook_deliveries`)
hands over whatever is due and was not (lost message, broker down, retry time reached, pause over).
`delivery_attempt` claims a delivery (compare-and-set CREATED -> IN_PROGRESS), POSTs outside any
transaction, and records the outcome: 2xx = SUCCEEDED; otherwise another attempt is scheduled in
`next_attempt_at` (exponential backoff with jitter, 10 attempts over about 24 h; never a long Celery
countdown, which Redis would redeliver after its visibility timeout), then FAILED. A delivery waits
while an earlier event of its bag is unfinished for the same endpoint. An attempt whose worker died
(or whose outcome could not be recorded, after a few retries on a fresh database connection) stays
IN_PROGRESS until the relay makes it due again, WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS after its claim:
the bag's later events wait that long at most. An endpoint with more than
50 failed attempts in 30 minutes pauses for 1 h, then 3 h, then 24 h; tripping once more disables it.

The tasks (notifications.tasks) are imported here at module level; they import this module inside
themselves, so neither import runs the other at start-up.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import F
from django.utils import timezone

from notifications import selectors, tasks
from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint
from notifications.sender import AttemptResult, post_webhook
from notifications.signing import (
    BAG_ID_HEADER,
    ENTITY_LENGTH_HEADER,
    EVENT_ID_HEADER,
    EVENT_ID_SOURCE_HEADER,
    HMAC_HEADER,
    ORDER_ID_HEADER,
    TOPIC_HEADER,
    USER_AGENT,
    WEBHOOK_ID_HEADER,
    sign,
)
from violet_refunds.crypto import CredentialsUnreadable

logger = logging.getLogger(__name__)

# --- delivery policy (spec section 5) -------------------------------------------------------------
MAX_ATTEMPTS = 10
# Waits double after each failed attempt; 169 s x (2^0 + ... + 2^8) = 169 s x 511 ≈ 24 h, so the
# 10th attempt comes about a day after the first. Each wait is jittered by ±RETRY_JITTER.
RETRY_BASE_SECONDS = 169
RETRY_JITTER = 0.2
# The spec asks channels to answer within ~10 s; settings.NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS overrides.
DELIVERY_TIMEOUT_SECONDS = 10.0
# More than FAILURES_BEFORE_PAUSE failed attempts within FAILURE_WINDOW pause the endpoint for the
# next of PAUSE_DURATIONS; tripping again once every pause has been used disables it.
FAILURES_BEFORE_PAUSE = 50
FAILURE_WINDOW = timedelta(minutes=30)
PAUSE_DURATIONS = (timedelta(hours=1), timedelta(hours=3), timedelta(hours=24))
# --- relay ------------------------------------------------------------------------------------------
RELAY_BATCH_SIZE = 500
# A delivery the relay handed to the broker is handed over again only after this long (lost message).
RELAY_REPUBLISH_AFTER = timedelta(seconds=60)
# IN_PROGRESS longer than this: the worker died mid-attempt, or the outcome could not be recorded (an
# attempt takes at most the timeout plus recording). The default of
# settings.WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS, which governs (see `delivery_stuck_after`); the bag's
# later events wait this long at most behind an interrupted attempt (plus one relay interval).
STUCK_AFTER = timedelta(seconds=60)
# Recording an attempt's outcome after the POST: a database error (connection terminated, server
# restarting) is retried on a fresh connection after these waits, so the outcome is kept instead of
# the channel getting the event again after the stuck wait. Their sum stays well inside the margin
# that settings.WEBHOOK_DELIVERY_STUCK_MARGIN_SECONDS leaves above the channel timeout.
RECORD_RETRY_WAITS_SECONDS = (0.5, 1.0, 2.0)


def delivery_timeout_seconds() -> float:
    return float(getattr(settings, "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS", DELIVERY_TIMEOUT_SECONDS))


def delivery_stuck_after() -> timedelta:
    seconds = getattr(settings, "WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS", None)
    return timedelta(seconds=seconds) if seconds else STUCK_AFTER


def endpoint_disable_locked(endpoint: WebhookEndpoint, *, reason: str, now: datetime) -> None:
    """DISABLED, with its waiting deliveries cancelled; the caller holds the endpoint's row lock."""
    endpoint.status = WebhookEndpoint.Status.DISABLED
    endpoint.paused_until = None
    endpoint.disabled_reason = reason[:255]
    endpoint.save()
    # Nothing more goes out; waiting deliveries end CANCELLED (the spec's status for that).
    WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.CREATED).update(
        status=DeliveryStatus.CANCELLED, date_finished=now, next_attempt_at=None, date_last_modified=now
    )


# --------------------------------------------------------------------------------------------------
# Relay and delivery
# --------------------------------------------------------------------------------------------------


def deliveries_publish(delivery_ids: Iterable[int]) -> None:
    """Hand deliveries to the broker (call it on commit); what fails to go, the relay hands over."""
    for delivery_id in delivery_ids:
        try:
            tasks.deliver_webhook.delay(delivery_id)
        except Exception:  # broker down: the relay hands it over from the database later
            logger.exception("Could not enqueue webhook delivery %s; the relay will", delivery_id)


def deliveries_relay_kick() -> None:
    try:
        tasks.relay_webhook_deliveries.delay()
    except Exception:
        logger.exception("Could not enqueue the webhook relay; beat will run it")


@dataclass(frozen=True)
class RelayResult:
    resumed: int = 0
    recovered: int = 0
    published: int = 0


def deliveries_relay(*, now: datetime | None = None, limit: int = RELAY_BATCH_SIZE) -> RelayResult:
    """Beat (and kicks): resume endpoints whose pause is over, recover attempts whose worker died,
    and hand every due delivery to the broker."""
    now = now or timezone.now()
    resumed = selectors.endpoints_due_to_resume(now=now).update(
        status=WebhookEndpoint.Status.ACTIVE,
        paused_until=None,
        failure_window_started_at=None,
        failures_in_window=0,
        date_last_modified=now,
    )
    recovered = _deliveries_recover_stuck(now)
    ids = selectors.deliveries_due(now=now, republish_before=now - RELAY_REPUBLISH_AFTER, limit=limit)
    if ids:
        WebhookDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        deliveries_publish(ids)
    return RelayResult(resumed=resumed, recovered=recovered, published=len(ids))


def _deliveries_recover_stuck(now: datetime) -> int:
    recovered = 0
    for delivery in selectors.deliveries_stuck(claimed_before=now - delivery_stuck_after()):
        final = delivery.attempts >= MAX_ATTEMPTS
        recovered += WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.IN_PROGRESS, claimed_at=delivery.claimed_at
        ).update(
            status=DeliveryStatus.FAILED if final else DeliveryStatus.CREATED,
            claimed_at=None,
            next_attempt_at=None if final else now,
            date_finished=now if final else None,
            last_error="The attempt was interrupted (worker stopped, or the database unreachable) before its "
            "outcome was recorded.",
            date_last_modified=now,
        )
    return recovered


def delivery_retry_delay(attempts_made: int) -> timedelta:
    """The wait after the n-th failed attempt: RETRY_BASE_SECONDS x 2^(n-1), ±RETRY_JITTER."""
    base = RETRY_BASE_SECONDS * (2 ** max(attempts_made - 1, 0))
    return timedelta(seconds=base * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))


def delivery_headers(delivery: WebhookDelivery, body: bytes) -> dict[str, str]:
    event = delivery.event
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HMAC_HEADER: sign(body, delivery.endpoint.signing_secret),
        EVENT_ID_HEADER: str(event.event_id),
        WEBHOOK_ID_HEADER: str(delivery.endpoint_id),
        TOPIC_HEADER: event.event_type,
        ENTITY_LENGTH_HEADER: str(len(body)),
    }
    if event.bag_id is not None:  # every event but TEST, which is about no order
        headers[ORDER_ID_HEADER] = str(event.order_id)
        headers[BAG_ID_HEADER] = str(event.bag_id)
    if event.resent_from is not None:
        headers[EVENT_ID_SOURCE_HEADER] = str(event.resent_from.event_id)
    return headers


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # the delivery's status afterwards, or why nothing was attempted
    detail: str = ""


def delivery_attempt(*, delivery_id: int, send: Callable[..., AttemptResult] = post_webhook) -> AttemptOutcome:
    """One attempt of one delivery, if it is due, first of its bag, and nobody else has it.

    `send` makes the POST (`post_webhook`: over the network). The demo world (seed_demo) passes an
    in-process channel instead, so its deliveries are claimed, attempted and recorded exactly as real
    ones without anything leaving the machine."""
    delivery = selectors.delivery_for_attempt(delivery_id)
    if delivery is None:
        return AttemptOutcome("MISSING")
    if delivery.status != DeliveryStatus.CREATED:
        return AttemptOutcome(delivery.status, "not waiting")
    if delivery.endpoint.status != WebhookEndpoint.Status.ACTIVE:
        return AttemptOutcome(delivery.status, f"webhook {delivery.endpoint.status}")
    now = timezone.now()
    if delivery.next_attempt_at and delivery.next_attempt_at > now:
        return AttemptOutcome(delivery.status, "not due")
    if selectors.delivery_is_held_back(delivery):
        return AttemptOutcome(delivery.status, "an earlier event of the bag is still on its way")
    claimed = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.CREATED).update(
        status=DeliveryStatus.IN_PROGRESS,
        claimed_at=now,
        attempts=F("attempts") + 1,
        last_attempt_at=now,
        date_last_modified=now,
    )
    if not claimed:
        return AttemptOutcome("CLAIMED", "another worker has it")
    body = delivery.event.body.encode()
    try:
        headers = delivery_headers(delivery, body)
    except CredentialsUnreadable:
        result = AttemptResult(None, "The signing secret cannot be decrypted with FIELD_ENCRYPTION_KEY.", 0)
    else:
        result = send(url=delivery.endpoint.url, body=body, headers=headers, timeout=delivery_timeout_seconds())
    return _delivery_attempt_record_retrying(delivery.pk, claimed_at=now, result=result)


def _delivery_attempt_record_retrying(
    delivery_id: int, *, claimed_at: datetime, result: AttemptResult
) -> AttemptOutcome:
    """Record the outcome, retrying a database error (connection lost, server restarting) a few times
    on a fresh connection. If it still fails the error propagates: the delivery stays IN_PROGRESS and
    the relay makes it due again after WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS (sent once more: channels
    dedupe on X-Violet-Event-Id). Never lost either way."""
    for wait in (*RECORD_RETRY_WAITS_SECONDS, None):
        try:
            return _delivery_attempt_record(delivery_id, claimed_at=claimed_at, result=result)
        except (OperationalError, InterfaceError) as exc:
            if wait is None:
                raise
            logger.warning("webhook delivery %s: outcome not recorded (%s); retrying in %s s", delivery_id, exc, wait)
            _database_connection_reset()
            time.sleep(wait)
    raise AssertionError("unreachable")


def _database_connection_reset() -> None:
    """After a database error the connection may be dead (backend terminated, server restarted):
    close it so the next query opens a fresh one. Not inside a transaction someone else holds."""
    for db in connections.all(initialized_only=True):
        if not db.in_atomic_block:
            db.close()


def _delivery_attempt_record(delivery_id: int, *, claimed_at: datetime, result: AttemptResult) -> AttemptOutcome:
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("event").filter(pk=delivery_id).first()
        if delivery is None or delivery.status != DeliveryStatus.IN_PROGRESS or delivery.claimed_at != claimed_at:
            # Deleted with its endpoint, or recovered as stuck and claimed again: not ours to record.
            return AttemptOutcome("STALE", "the attempt's claim is gone")
        delivery.claimed_at = None
        delivery.last_status_code = result.status_code
        delivery.last_error = result.error[:2000]
        delivery.last_reply_excerpt = result.reply_excerpt[:2000]
        delivery.last_duration_ms = result.duration_ms
        if delivery.event.event_type == EventType.TEST:
            # One attempt, and no say in the endpoint's health: a channel probing a broken URL does not
            # pause its webhook, nor does a test that answers clear a real failing streak.
            delivery.status = DeliveryStatus.SUCCEEDED if result.succeeded else DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delivery.date_finished = now
            delivery.save()
            return AttemptOutcome(delivery.status, result.error)
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        if result.succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.next_attempt_at = None
            delivery.date_finished = now
            _endpoint_record_success(endpoint, now)
        else:
            _endpoint_record_failure(endpoint, now)
            if endpoint.status == WebhookEndpoint.Status.DISABLED:
                delivery.status = DeliveryStatus.CANCELLED
                delivery.next_attempt_at = None
                delivery.date_finished = now
            elif delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.FAILED
                delivery.next_attempt_at = None
                delivery.date_finished = now
            else:
                delivery.status = DeliveryStatus.CREATED
                delivery.next_attempt_at = now + delivery_retry_delay(delivery.attempts)
        delivery.save()
        if delivery.status != DeliveryStatus.CREATED:
            following = selectors.delivery_next_of_bag(delivery)
            if following is not None and (following.next_attempt_at is None or following.next_attempt_at <= now):
                transaction.on_commit(lambda: deliveries_publish([following.pk]))
    return AttemptOutcome(delivery.status, result.error)


def _endpoint_record_success(endpoint: WebhookEndpoint, now: datetime) -> None:
    endpoint.last_success_at = now
    # A success ends the failing streak: its pauses no longer count toward disabling.
    endpoint.pause_rounds = 0
    endpoint.failure_window_started_at = None
    endpoint.failures_in_window = 0
    endpoint.save(
        update_fields=[
            "last_success_at",
            "pause_rounds",
            "failure_window_started_at",
            "failures_in_window",
            "date_last_modified",
        ]
    )


def _endpoint_record_failure(endpoint: WebhookEndpoint, now: datetime) -> None:
    window_start = endpoint.failure_window_started_at
    if window_start is None or now - window_start >= FAILURE_WINDOW:
        endpoint.failure_window_started_at = now
        endpoint.failures_in_window = 1
    else:
        endpoint.failures_in_window += 1
    endpoint.last_failure_at = now
    if endpoint.failures_in_window > FAILURES_BEFORE_PAUSE and endpoint.status == WebhookEndpoint.Status.ACTIVE:
        endpoint.failure_window_started_at = None
        endpoint.failures_in_window = 0
        if endpoint.pause_rounds >= len(PAUSE_DURATIONS):
            endpoint_disable_locked(
                endpoint,
                reason=f"More than {FAILURES_BEFORE_PAUSE} failures in {_minutes(FAILURE_WINDOW)} min after "
                f"{len(PAUSE_DURATIONS)} pauses.",
                now=now,
            )
            logger.warning("webhook %s disabled after %s pauses", endpoint.pk, endpoint.pause_rounds)
            return
        pause = PAUSE_DURATIONS[endpoint.pause_rounds]
        endpoint.status = WebhookEndpoint.Status.PAUSED
        endpoint.paused_until = now + pause
        endpoint.pause_rounds += 1
        logger.warning(
            "webhook %s paused until %s (round %s)", endpoint.pk, endpoint.paused_until, endpoint.pause_rounds
        )
    endpoint.save()


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)

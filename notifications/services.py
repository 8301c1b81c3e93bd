"""Outbound webhooks: every write lives here (spec/violet-api.md section 5, spec/reliability.md section 3).

Outbox. The refund services call the `*_emit` functions inside the transaction that makes the change,
so an event exists exactly when its change was committed. Each event has a `dedupe_key` naming the
change (refund + status + retry round, bag + transition + refunded total); emitting it again finds
the key and does nothing, so a reprocessed refund or a replayed platform signal never sends twice.
Events are numbered per bag under the bag's row lock.

Delivery. After commit the new deliveries are handed to Celery; a beat task (`deliveries_relay`)
hands over whatever is due and was not (lost message, broker down, retry time reached, pause over).
`delivery_attempt` claims a delivery (compare-and-set CREATED -> IN_PROGRESS), POSTs outside any
transaction, and records the outcome: 2xx = SUCCEEDED; otherwise another attempt is scheduled in
`next_attempt_at` (exponential backoff with jitter, 10 attempts over about 24 h; never a long Celery
countdown, which Redis would redeliver after its visibility timeout), then FAILED. A delivery waits
while an earlier event of its bag is unfinished for the same endpoint. An endpoint with more than
50 failed attempts in 30 minutes pauses for 1 h, then 3 h, then 24 h; tripping once more disables it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from notifications import selectors
from notifications.models import (
    UNFINISHED_DELIVERY_STATUSES,
    DeliveryStatus,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
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
    signing_secret_generate,
)
from refunds.models import App, Bag, BagStatus, Refund, RefundStatus
from refunds.representation import order_representation, refund_representation
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.exceptions import Conflict, InvalidTransition, ValidationFailed

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
# IN_PROGRESS longer than this: the worker died mid-attempt (an attempt takes at most the timeout).
STUCK_AFTER = timedelta(minutes=5)
# --- registration -----------------------------------------------------------------------------------
MAX_ENDPOINTS_PER_APP = 20

REFUND_EVENT_TYPES = {
    RefundStatus.PROCESSING: EventType.REFUND_PROCESSING,
    RefundStatus.COMPLETED: EventType.REFUND_COMPLETED,
    RefundStatus.PARTIALLY_COMPLETED: EventType.REFUND_PARTIALLY_COMPLETED,
    RefundStatus.FAILED: EventType.REFUND_FAILED,
    RefundStatus.EXTERNAL: EventType.REFUND_EXTERNAL,
    RefundStatus.CANCELED: EventType.REFUND_CANCELED,
}
REFUNDED_BAG_STATUSES = (BagStatus.REFUNDED, BagStatus.PARTIALLY_REFUNDED)


def delivery_timeout_seconds() -> float:
    return float(getattr(settings, "NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS", DELIVERY_TIMEOUT_SECONDS))


# --------------------------------------------------------------------------------------------------
# Endpoints: registration and state
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredEndpoint:
    endpoint: WebhookEndpoint
    signing_secret: str  # returned once, at registration


def _url_error(message: str) -> ValidationFailed:
    return ValidationFailed("The webhook is invalid.", field_errors={"remote_endpoint": [message]})


def webhook_url_validate(url) -> str:
    """HTTPS, to a public host; with DEBUG on, http and local addresses are allowed (development)."""
    if not isinstance(url, str) or not url.strip():
        raise _url_error("A URL is required.")
    url = url.strip()
    if len(url) > 500:
        raise _url_error("At most 500 characters.")
    debug = bool(settings.DEBUG)
    schemes = ["http", "https"] if debug else ["https"]
    try:
        URLValidator(schemes=schemes)(url)
    except DjangoValidationError:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "http" and not debug:
            raise _url_error("Must be an https:// URL.") from None
        raise _url_error("Enter a valid URL" + ("." if debug else " starting with https://.")) from None
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise _url_error("Credentials in the URL are not allowed; the signature authenticates us.")
    if not debug and _is_local_host(parts.hostname or ""):
        raise _url_error("Must be a public host, not a local or private address.")
    return url


def _is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ip_address(host)
    except ValueError:
        return False  # a name: resolving it here would only check what it resolves to today
    return not address.is_global


def event_types_validate(event_types) -> list[str]:
    if event_types is None:
        return []
    if not isinstance(event_types, list | tuple) or not all(isinstance(t, str) for t in event_types):
        raise ValidationFailed("The webhook is invalid.", field_errors={"events": ["A list of event types."]})
    unknown = sorted({t for t in event_types if t not in EventType.values})
    if unknown:
        raise ValidationFailed(
            "The webhook is invalid.",
            field_errors={"events": [f"Unknown event type(s): {', '.join(unknown)}."]},
        )
    return list(dict.fromkeys(event_types))


def webhook_endpoint_register(*, app: App, url: str, event_types: Sequence[str] = (), actor: str) -> RegisteredEndpoint:
    url = webhook_url_validate(url)
    types = event_types_validate(list(event_types))
    if WebhookEndpoint.objects.filter(app=app).count() >= MAX_ENDPOINTS_PER_APP:
        raise Conflict(f"An app can have at most {MAX_ENDPOINTS_PER_APP} webhooks.", error_code="too_many_webhooks")
    if WebhookEndpoint.objects.filter(app=app, url=url).exists():
        raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists")
    secret = signing_secret_generate()
    try:
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.create(app=app, url=url, event_types=types, signing_secret=secret)
    except IntegrityError:  # the same URL registered concurrently
        raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists") from None
    logger.info("webhook %s registered for app %s by %s: %s %s", endpoint.pk, app.pk, actor, url, types or "all")
    return RegisteredEndpoint(endpoint=endpoint, signing_secret=secret)


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    actor: str,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    status: str | None = None,
) -> WebhookEndpoint:
    """Change the URL or the subscription; status ACTIVE resumes or re-enables, DISABLED stops."""
    fields = []
    if url is not None:
        url = webhook_url_validate(url)
        if url != endpoint.url:
            if WebhookEndpoint.objects.filter(app_id=endpoint.app_id, url=url).exclude(pk=endpoint.pk).exists():
                raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists")
            endpoint.url = url
            fields.append("url")
    if event_types is not None:
        endpoint.event_types = event_types_validate(list(event_types))
        fields.append("event_types")
    if fields:
        try:
            with transaction.atomic():
                endpoint.save(update_fields=[*fields, "date_last_modified"])
        except IntegrityError:
            raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists") from None
    if status == WebhookEndpoint.Status.ACTIVE:
        endpoint = webhook_endpoint_resume(endpoint=endpoint, actor=actor)
    elif status == WebhookEndpoint.Status.DISABLED:
        endpoint = webhook_endpoint_disable(endpoint=endpoint, actor=actor, reason=f"Disabled by {actor}.")
    elif status is not None:
        raise ValidationFailed("The webhook is invalid.", field_errors={"status": ["ACTIVE or DISABLED."]})
    return endpoint


def webhook_endpoint_resume(*, endpoint: WebhookEndpoint, actor: str) -> WebhookEndpoint:
    """Back to ACTIVE now (a paused or disabled endpoint), with a clean failure record. Deliveries
    cancelled by a disable stay cancelled; the channel can resend them."""
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        current.status = WebhookEndpoint.Status.ACTIVE
        current.paused_until = None
        current.pause_rounds = 0
        current.failure_window_started_at = None
        current.failures_in_window = 0
        current.disabled_reason = ""
        current.save()
    logger.info("webhook %s resumed by %s", endpoint.pk, actor)
    transaction.on_commit(deliveries_relay_kick)
    return current


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, actor: str, reason: str) -> WebhookEndpoint:
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        _disable_locked(current, reason=reason, now=timezone.now())
    logger.info("webhook %s disabled by %s: %s", endpoint.pk, actor, reason)
    return current


def _disable_locked(endpoint: WebhookEndpoint, *, reason: str, now: datetime) -> None:
    endpoint.status = WebhookEndpoint.Status.DISABLED
    endpoint.paused_until = None
    endpoint.disabled_reason = reason[:255]
    endpoint.save()
    # Nothing more goes out; waiting deliveries end CANCELLED (the spec's status for that).
    WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.CREATED).update(
        status=DeliveryStatus.CANCELLED, date_finished=now, next_attempt_at=None, date_last_modified=now
    )


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: str) -> None:
    """Remove the endpoint and its deliveries; the app's events stay (GET /events still lists them)."""
    endpoint_id = endpoint.pk
    endpoint.delete()
    logger.info("webhook %s deleted by %s", endpoint_id, actor)


# --------------------------------------------------------------------------------------------------
# Emitting (the outbox): called inside the transaction of the change
# --------------------------------------------------------------------------------------------------


# The refund pipeline's throughput is bound by database round trips, so one call costs a fixed
# handful of queries, however many events it writes (ORDER_REFUNDED and ORDER_UPDATED share one):
#   1. lock the bag, reading with it its order, app, the app's endpoints (and a refund's retry round);
#   2. read the body's root row (the Refund or the Order) together with the bag's last sequence and
#      which of the call's dedupe keys already have their event; stop here if none is new;
#   3. load the rest of the body: the Order's bags and SKUs (2), or the Refund's SKUs, errors and
#      transfer reversals (one query each, only for those it has);
#   4. insert the new events in one statement, then their deliveries in one (none without endpoints).
# The dedupe check runs once, after the lock, and is exact there: every event with a dedupe key is
# written under its bag's lock (a key names the bag or one of its refunds); on PostgreSQL (READ
# COMMITTED) a statement that starts after the lock sees all the previous holder committed, and
# SQLite lets one writer at a time. The unique dedupe_key stays the last word: should it ever fire,
# the change's transaction fails instead of sending twice.


def _json_body(data) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _NewEvent:
    event_type: str
    dedupe_key: str | None
    refund_id: int | None = None
    resent_from: WebhookEvent | None = None


def _events_write(
    bag: selectors.LockedBag,
    state: selectors.OutboxState,
    new: Sequence[_NewEvent],
    *,
    body: str,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[WebhookEvent]:
    """Insert `new` after the bag's last event, in order, all with the same body; each gets a delivery
    per endpoint of the app subscribed to its type, or per given endpoint (a resend)."""
    events = WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                app_id=bag.app_id,
                event_type=item.event_type,
                order_id=bag.order_id,
                bag_id=bag.id,
                refund_id=item.refund_id,
                sequence=state.last_sequence + position,
                dedupe_key=item.dedupe_key,
                resent_from=item.resent_from,
                body=body,
            )
            for position, item in enumerate(new, start=1)
        ]
    )
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=event, endpoint_id=endpoint.id, next_attempt_at=now)
            for event in events
            for endpoint in (
                endpoints if endpoints is not None else [r for r in bag.receivers if r.subscribes_to(event.event_type)]
            )
        ]
    )
    if deliveries:
        delivery_ids = [delivery.pk for delivery in deliveries]
        transaction.on_commit(lambda: _publish(delivery_ids))
    return events


def refund_event_emit(refund: Refund) -> WebhookEvent | None:
    """The REFUND_<status> event of the refund's current status, once per status and retry round
    (a retried refund that fails again is a new change; a reprocessed one is not)."""
    event_type = REFUND_EVENT_TYPES.get(refund.status)
    if event_type is None:
        return None
    # No savepoint: the caller's transaction is the unit (an error here must undo the change too).
    with transaction.atomic(savepoint=False):
        bag = selectors.bag_lock_for_events(refund.bag_id, retry_rounds_of=refund.pk)
        dedupe_key = f"refund:{refund.pk}:{refund.status}:{bag.retry_round}"
        current, state = selectors.refund_for_event(refund.pk, bag_id=bag.id, dedupe_keys=[dedupe_key])
        if dedupe_key in state.emitted:
            return None
        selectors.refund_payload_load(current)
        (event,) = _events_write(
            bag,
            state,
            [_NewEvent(event_type, dedupe_key, refund_id=refund.pk)],
            body=_json_body(refund_representation(current)),
        )
    return event


def bag_refund_events_emit(bag: Bag, *, refunded_amount: int) -> list[WebhookEvent]:
    """After the bag's refunded total changed: ORDER_REFUNDED (unless the bag is CANCELED, which
    Violet reports as ORDER_CANCELLED instead) and ORDER_UPDATED, once per refunded total."""
    planned = []
    if bag.status in REFUNDED_BAG_STATUSES:
        planned.append(
            _NewEvent(EventType.ORDER_REFUNDED, f"bag:{bag.pk}:{EventType.ORDER_REFUNDED}:{refunded_amount}")
        )
    planned.append(
        _NewEvent(
            EventType.ORDER_UPDATED, f"bag:{bag.pk}:{EventType.ORDER_UPDATED}:{bag.financial_status}:{refunded_amount}"
        )
    )
    return _order_events_emit(bag.pk, planned)


def bag_cancel_events_emit(bag: Bag) -> list[WebhookEvent]:
    """The bag became CANCELED: ORDER_CANCELLED and ORDER_UPDATED, once per bag."""
    return _order_events_emit(
        bag.pk,
        [
            _NewEvent(EventType.ORDER_CANCELLED, f"bag:{bag.pk}:{EventType.ORDER_CANCELLED}"),
            _NewEvent(EventType.ORDER_UPDATED, f"bag:{bag.pk}:{EventType.ORDER_UPDATED}:{BagStatus.CANCELED}"),
        ],
    )


def _order_events_emit(bag_id: int, planned: Sequence[_NewEvent]) -> list[WebhookEvent]:
    """Order events of one change: they carry the same body (the full Order), rendered once."""
    with transaction.atomic(savepoint=False):
        bag = selectors.bag_lock_for_events(bag_id)
        order, state = selectors.order_for_event(
            bag.order_id, bag_id=bag.id, dedupe_keys=[item.dedupe_key for item in planned]
        )
        new = [item for item in planned if item.dedupe_key not in state.emitted]
        if not new:
            return []
        selectors.order_payload_load(order)
        return _events_write(bag, state, new, body=_json_body(order_representation(order)))


@dataclass(frozen=True)
class ResendResult:
    event: WebhookEvent  # the new event, or the original when every target was still waiting for it
    resent_to: tuple[int, ...]  # endpoints that get the new event
    retried_now: tuple[int, ...]  # endpoints whose waiting delivery of the event was made due now


def event_resend(*, event: WebhookEvent, actor: str, endpoint: WebhookEndpoint | None = None) -> ResendResult:
    """Send an event again to one endpoint, or to every endpoint receiving its type.

    Where the event's delivery to an endpoint is still waiting for a retry, the retry happens now
    (same event id, no copy). Elsewhere the event is sent as a new event: a new X-Violet-Event-Id,
    X-Violet-Event-Id-Source naming the original, the original's exact body. Like every event of
    its bag, it goes out after the bag's earlier events for that endpoint."""
    if endpoint is not None:
        if endpoint.app_id != event.app_id:
            raise ValidationFailed("That webhook belongs to another app.", field_errors={"webhook_id": ["invalid"]})
        if endpoint.status == WebhookEndpoint.Status.DISABLED:
            raise InvalidTransition("That webhook is disabled; enable it before resending.")
        endpoints = [endpoint]
    else:
        endpoints = selectors.endpoints_receiving(event.app_id, event.event_type)
        if not endpoints:
            raise Conflict(
                f"No webhook of this app receives {event.event_type} events.", error_code="no_webhook_subscribed"
            )
    now = timezone.now()
    with transaction.atomic():
        waiting = dict(
            WebhookDelivery.objects.select_for_update()
            .filter(event=event, endpoint__in=endpoints, status__in=UNFINISHED_DELIVERY_STATUSES)
            .values_list("endpoint_id", "pk")
        )
        due_now = WebhookDelivery.objects.filter(pk__in=waiting.values(), status=DeliveryStatus.CREATED)
        due_ids = list(due_now.values_list("pk", flat=True))
        due_now.update(next_attempt_at=now, enqueued_at=None, date_last_modified=now)
        if due_ids:
            transaction.on_commit(lambda: _publish(due_ids))
        others = [e for e in endpoints if e.pk not in waiting]
        created = []
        if others:
            original = event.resent_from or event
            bag = selectors.bag_lock_for_events(event.bag_id)
            created = _events_write(
                bag,
                selectors.outbox_state(bag.id),
                [_NewEvent(event.event_type, None, refund_id=event.refund_id, resent_from=original)],
                body=original.body,
                endpoints=others,
            )
    result = ResendResult(
        event=created[0] if created else event,
        resent_to=tuple(e.pk for e in others),
        retried_now=tuple(sorted(waiting)),
    )
    logger.info(
        "event %s resent by %s: as %s to %s; retried now for %s",
        event.event_id,
        actor,
        result.event.event_id,
        result.resent_to,
        result.retried_now,
    )
    return result


# --------------------------------------------------------------------------------------------------
# Relay and delivery
# --------------------------------------------------------------------------------------------------


def _publish(delivery_ids: Iterable[int]) -> None:
    from notifications.tasks import deliver_webhook

    for delivery_id in delivery_ids:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:  # broker down: the relay hands it over from the database later
            logger.exception("Could not enqueue webhook delivery %s; the relay will", delivery_id)


def deliveries_relay_kick() -> None:
    from notifications.tasks import relay_webhook_deliveries

    try:
        relay_webhook_deliveries.delay()
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
    recovered = _recover_stuck(now)
    ids = selectors.deliveries_due(now=now, republish_before=now - RELAY_REPUBLISH_AFTER, limit=limit)
    if ids:
        WebhookDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        _publish(ids)
    return RelayResult(resumed=resumed, recovered=recovered, published=len(ids))


def _recover_stuck(now: datetime) -> int:
    recovered = 0
    for delivery in selectors.deliveries_stuck(claimed_before=now - STUCK_AFTER):
        final = delivery.attempts >= MAX_ATTEMPTS
        recovered += WebhookDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.IN_PROGRESS, claimed_at=delivery.claimed_at
        ).update(
            status=DeliveryStatus.FAILED if final else DeliveryStatus.CREATED,
            claimed_at=None,
            next_attempt_at=None if final else now,
            date_finished=now if final else None,
            last_error="The attempt was interrupted (worker stopped) before its outcome was recorded.",
            date_last_modified=now,
        )
    return recovered


def retry_delay(attempts_made: int) -> timedelta:
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
        ORDER_ID_HEADER: str(event.order_id),
        BAG_ID_HEADER: str(event.bag_id),
        ENTITY_LENGTH_HEADER: str(len(body)),
    }
    if event.resent_from is not None:
        headers[EVENT_ID_SOURCE_HEADER] = str(event.resent_from.event_id)
    return headers


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # the delivery's status afterwards, or why nothing was attempted
    detail: str = ""


def delivery_attempt(*, delivery_id: int) -> AttemptOutcome:
    """One attempt of one delivery, if it is due, first of its bag, and nobody else has it."""
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
        result = post_webhook(url=delivery.endpoint.url, body=body, headers=headers, timeout=delivery_timeout_seconds())
    return _record_attempt(delivery.pk, claimed_at=now, result=result)


def _record_attempt(delivery_id: int, *, claimed_at: datetime, result: AttemptResult) -> AttemptOutcome:
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("event").filter(pk=delivery_id).first()
        if delivery is None or delivery.status != DeliveryStatus.IN_PROGRESS or delivery.claimed_at != claimed_at:
            # Deleted with its endpoint, or recovered as stuck and claimed again: not ours to record.
            return AttemptOutcome("STALE", "the attempt's claim is gone")
        delivery.claimed_at = None
        delivery.last_status_code = result.status_code
        delivery.last_error = result.error[:2000]
        delivery.last_duration_ms = result.duration_ms
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
                delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        delivery.save()
        if delivery.status != DeliveryStatus.CREATED:
            following = selectors.delivery_next_of_bag(delivery)
            if following is not None and (following.next_attempt_at is None or following.next_attempt_at <= now):
                transaction.on_commit(lambda: _publish([following.pk]))
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
            _disable_locked(
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

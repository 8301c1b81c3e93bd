"""Platform signals -> refunds: store raw events, turn them into order states, record what is missing.

- `event_ingest`: store an authenticated delivery once per (platform, event id) and enqueue its
  processing after commit (a duplicate delivery stores nothing and enqueues nothing).
- `event_process`: adapter -> `OrderState` -> the merchant's bag -> `order_reconcile`; the
  event ends PROCESSED, IGNORED (with the reason), RETRYING (a transient error: database, broker,
  platform timeout/5xx/429; retried automatically with backoff until the retry horizon) or FAILED
  (a permanent error, or the horizon passed: for an operator), with error and traceback.
- `events_requeue`: beat's safety net (the database is the queue of record): events still RECEIVED,
  or RETRYING past their next attempt, by more than INBOUND_EVENT_REQUEUE_AFTER_SECONDS lost their
  message and are enqueued again.
- `order_reconcile`: the platform's rules name the refunds the state implies; whichever do not yet
  exist on the bag are handed to `refunds.services.refund_record_platform` as what the platform
  says was refunded (idempotent on (bag, external_id)); refunds work out the amounts under the
  bag lock. Running it twice, or on a stale or duplicated signal, changes nothing.
- `platform_orders_poll`: every adapter that polls (SFCC Option 1, no webhooks) reads each store's
  orders since its cursor; those that are events go through the same ingest and processing.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from platforms import selectors, tasks
from platforms.adapters import get_adapter, polling_adapters
from platforms.adapters.base import (
    EventIgnored,
    OrderState,
    OrderUnknown,
    PayloadMalformed,
    PlatformRefund,
    PollResult,
    WebhookEnvelope,
    state_signals_refund,
)
from platforms.clients.base import PlatformClientError
from platforms.models import InboundEvent, StoreConnection
from platforms.privacy import disconnect, ingest
from platforms.subscriptions.services import subscriptions_sync_later
from refunds.models import Bag, Refund, RefundSource
from refunds.services import (
    PlatformRefundRequest,
    RefundSkuLine,
    bag_mark_canceled,
    refund_record_platform,
)
from violet_refunds import retrying
from violet_refunds.db import row_insert_unless_conflict
from violet_refunds.exceptions import ApplicationError, ValidationFailed
from violet_refunds.publishing import task_publish
from violet_refunds.retrying import (
    ProcessingResult,
    database_connections_reset,
    event_requeue_after,
    processing_error_is_transient,
)

logger = logging.getLogger(__name__)

# Events whose topic starts with this came from our own polling, not from a platform's webhook.
POLL_TOPIC_PREFIX = "poll/"
# Beat expires at most this many events awaiting their order per run (the rest on the next run).
REQUEUE_BATCH_SIZE = retrying.REQUEUE_BATCH_SIZE


# --------------------------------------------------------------------------------------------------
# Store connections
# --------------------------------------------------------------------------------------------------


def store_connection_replace_secrets(
    *, connection: StoreConnection, webhook_secret: str | None = None, credentials: dict | None = None
) -> StoreConnection:
    """Replace the webhook secret and/or the platform credentials (both stored encrypted); the
    store's webhook subscriptions are then synced (a rotated secret is registered at the platform)."""
    update_fields = ["date_last_modified"]
    if webhook_secret is not None:
        connection.webhook_secret = webhook_secret
        update_fields.append("webhook_secret")
    if credentials is not None:
        connection.credentials = credentials
        update_fields.append("credentials")
    if len(update_fields) > 1:
        connection.save(update_fields=update_fields)
        subscriptions_sync_later(connection)
    return connection


# --------------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    event: InboundEvent
    created: bool


def event_ingest(
    *,
    connection: StoreConnection | None,
    envelope: WebhookEnvelope,
    body: str,
    headers: dict,
    remote_ip: str | None = None,
    platform: str = "",
) -> IngestResult:
    """Store the raw event exactly once per (platform, event id); enqueue processing on commit.
    `connection=None` (with `platform`): an app-level delivery for a store no connection names yet;
    processing routes it then (see "App-level deliveries" below)."""
    if not envelope.event_id or len(envelope.event_id) > 255:
        raise PayloadMalformed("The event id is missing or longer than 255 characters.")
    platform = connection.merchant.platform if connection is not None else platform
    if not platform:
        raise ValueError("event_ingest needs a connection or a platform.")
    event = InboundEvent(
        platform=platform,
        connection=connection,
        event_id=envelope.event_id,
        topic=envelope.topic[:255],
        headers=headers,
        # Least data (platforms.privacy.ingest): capability values stripped, the hash kept.
        body=ingest.strip_capabilities(body),
        body_sha256=ingest.body_sha256(body),
        remote_ip=remote_ip,
    )
    # One statement, no savepoint (the webhook hot path, issue #20): a repeated delivery inserts
    # nothing and raises nothing, so an outer transaction (a poll, a test) is never poisoned by it.
    if not row_insert_unless_conflict(event, conflict_fields=("platform", "event_id")):
        existing = InboundEvent.objects.filter(platform=platform, event_id=envelope.event_id).first()
        if existing is None:  # the row it collided with was deleted meanwhile
            raise IntegrityError(f"Inbound event {platform} {envelope.event_id} collided with a row that is gone.")
        if connection is not None:
            connection_heard_from(connection.pk)
        return IngestResult(event=existing, created=False)
    # Outside a transaction (the webhook views) the row is committed already and this runs now.
    transaction.on_commit(lambda: _enqueue_processing(event.pk))
    if connection is not None:
        connection_heard_from(connection.pk)
    return IngestResult(event=event, created=True)


# A delivery sets its connection's last_event_at (issue #24: a silent store must be noticed), at most
# once per LAST_EVENT_MARK_INTERVAL per process and store: the webhook hot path pays one UPDATE a
# minute per busy store, not one per delivery; the UPDATE's own condition skips it when another
# process wrote it within the interval.
LAST_EVENT_MARK_INTERVAL = timedelta(seconds=60)
_LAST_EVENT_MARKS_MAX = 10_000
_last_event_marked: dict[int, float] = {}


def connection_heard_from(connection_id: int) -> None:
    clock = time.monotonic()
    marked = _last_event_marked.get(connection_id)
    if marked is not None and clock - marked < LAST_EVENT_MARK_INTERVAL.total_seconds():
        return
    if len(_last_event_marked) >= _LAST_EVENT_MARKS_MAX:
        _last_event_marked.clear()
    _last_event_marked[connection_id] = clock
    now = timezone.now()
    StoreConnection.objects.filter(pk=connection_id).filter(
        Q(last_event_at__isnull=True) | Q(last_event_at__lt=now - LAST_EVENT_MARK_INTERVAL)
    ).update(last_event_at=now)


def connection_heard_from_marks_clear() -> None:
    """Forget which stores this process marked recently (tests)."""
    _last_event_marked.clear()


def _enqueue_processing(event_id: int) -> None:
    try:
        # One LPUSH of the message apply_async would send (violet_refunds.publishing): the receiver's
        # hot path. In a worker (beat's requeue) or in eager mode it is apply_async itself.
        task_publish(tasks.process_inbound_event, event_id)
    except Exception:  # broker down: events_requeue picks the event up from the database
        logger.exception("Could not enqueue inbound event %s; it will be requeued", event_id)


def events_requeue(*, now: datetime | None = None) -> list[int]:
    """Beat: re-enqueue events whose message was lost (a lost message must lose nothing): RECEIVED
    for longer than the requeue age (broker down at enqueue, queue flushed, worker killed), and
    RETRYING whose next attempt is overdue by as much (the task's own retry message died with its
    worker or with Redis). An event is re-enqueued at most once per requeue age, so a backlog in the
    queue does not get a copy per beat run; a copy that finds the event settled does nothing."""
    now = now or timezone.now()
    lost = selectors.events_to_requeue(cutoff=now - event_requeue_after())
    return retrying.events_requeue_marked(lost, now=now, enqueue=_enqueue_processing)


# --------------------------------------------------------------------------------------------------
# Reconcile
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileResult:
    recorded: tuple[Refund, ...] = ()
    already_recorded: tuple[Refund, ...] = ()
    ignored_reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def outcome(self) -> str:
        lines = [
            f"Recorded refund #{r.pk} (external id {r.external_id}): {r.amount} minor units {r.refund_currency} "
            f"= sub_total {r.sub_total_amount} + shipping {r.shipping_amount} + tax {r.tax_amount}."
            for r in self.recorded
        ]
        lines += [f"Refund #{r.pk} (external id {r.external_id}) was already recorded." for r in self.already_recorded]
        if not self.recorded and not self.already_recorded:
            lines.append(f"{self.ignored_reason}.")
        lines += [f"Note: {note}." for note in self.notes]
        return "\n".join(lines)


def order_reconcile(
    bag: Bag,
    state: OrderState,
    inbound_event: InboundEvent | None = None,
    *,
    source: str = RefundSource.PLATFORM_WEBHOOK,
) -> ReconcileResult:
    """Record every refund the platform state implies that the bag does not have yet."""
    adapter = get_adapter(state.platform)
    if state.cancelled:
        # Cancelled on the platform is CANCELED here, whether or not the rules make it a refund.
        bag_mark_canceled(bag=bag, actor=f"platform:{state.platform.lower()}")
    decision = adapter.refund_decision(state, bag)
    recorded: list[Refund] = []
    existing: list[Refund] = []
    notes: list[str] = []
    for platform_refund in decision.refunds:
        found = selectors.refund_by_external_id(bag, platform_refund.external_id)
        if found is not None:
            existing.append(found)
            continue
        request, line_notes = _refund_request(bag, state, platform_refund, source)
        result = refund_record_platform(
            bag=bag, request=request, actor=f"platform:{state.platform.lower()}", inbound_event=inbound_event
        )
        if result.refund is None:  # nothing left on the bag: the lines were never looked at
            notes.extend(result.notes)
            continue
        notes.extend([*line_notes, *result.notes])
        (recorded if result.created else existing).append(result.refund)
    ignored_reason = decision.ignored_reason.rstrip(".")
    if recorded or existing:
        notes = [ignored_reason, *notes] if ignored_reason else notes
        ignored_reason = ""
    else:
        ignored_reason = "; ".join(filter(None, [ignored_reason, *notes])) or "The order state implies no refund"
        notes = []
    return ReconcileResult(
        recorded=tuple(recorded),
        already_recorded=tuple(existing),
        ignored_reason=ignored_reason,
        notes=tuple(notes),
    )


def _refund_request(
    bag: Bag, state: OrderState, refund: PlatformRefund, source: str
) -> tuple[PlatformRefundRequest, list[str]]:
    """What the platform says was refunded, in the bag's terms (its line items matched to the bag's
    SKUs), and a note per line the bag does not have. Refunds decide the amounts under the bag lock."""
    notes: list[str] = []
    skus: list[RefundSkuLine] = []
    if not refund.is_full_remaining:
        skus_by_external_id = selectors.bag_skus_by_external_id(bag)
        for line in refund.lines:
            sku = skus_by_external_id.get(line.line_item_external_id)
            if sku is None:
                notes.append(f"line item {line.line_item_external_id} is not on bag {bag.pk}; recorded without it")
                continue
            skus.append(RefundSkuLine(order_sku_id=sku.pk, quantity=line.quantity, amount=line.amount))
    request = PlatformRefundRequest(
        external_id=refund.external_id,
        source=source,
        currency=state.currency,
        amount=refund.amount,
        parts=refund.parts,
        shipping_tax=refund.shipping_tax,
        skus=tuple(skus),
        shipping_included=refund.shipping_included,
        reason=refund.reason,
        reason_code=refund.reason_code,
        restock=refund.restock,
    )
    return request, notes


# --------------------------------------------------------------------------------------------------
# Process
# --------------------------------------------------------------------------------------------------


def event_process(event_id: int, *, only_if_due: bool = False) -> ProcessingResult[InboundEvent] | None:
    """Process one stored event (again, if it was processed before: everything downstream is idempotent).

    `only_if_due` (the task): do nothing for an event already PROCESSED, IGNORED or FAILED (a
    duplicate or stale message; FAILED waits for an operator), nor for a RETRYING event before its
    next attempt (a copy arriving early). Without it (a replay) the event is processed now."""
    event = selectors.inbound_event_for_processing(event_id)
    if event is None:
        logger.warning("Inbound event %s no longer exists", event_id)
        return None
    if only_if_due and (reason := retrying.not_due_reason(event, timezone.now())):
        return ProcessingResult(event, skipped=reason)
    if event.redacted_at is not None:
        return ProcessingResult(event, skipped="its body was redacted (privacy): nothing left to process")
    claims = retrying.run_claim(event)
    if retrying.claims_exhausted(claims):
        return ProcessingResult(_poisoned(event, claims - 1))
    source = RefundSource.PLATFORM_POLL if event.topic.startswith(POLL_TOPIC_PREFIX) else RefundSource.PLATFORM_WEBHOOK
    try:
        result = _reconcile_event(event, source)
    except OrderUnknown as exc:
        return ProcessingResult(_await_order(event, exc))
    except EventIgnored as exc:
        return ProcessingResult(_settle_ignored(event, outcome=exc.reason))
    except Exception as exc:
        disconnect.connection_auth_failure(event.connection, exc)
        if processing_error_is_transient(exc):
            logger.warning("Inbound event %s: transient error, will retry: %s", event.pk, exc, exc_info=True)
            if retrying.is_database_error(exc):
                database_connections_reset()
            return ProcessingResult(_retry_later(event, exc, traceback_text=traceback.format_exc()))
        logger.warning("Inbound event %s failed: %s", event.pk, exc, exc_info=True)
        return ProcessingResult(
            _finish(
                event,
                InboundEvent.Status.FAILED,
                outcome=_permanent_failure_outcome(exc),
                error=_describe_error(exc),
                traceback_text=traceback.format_exc(),
            )
        )
    # PROCESSED when this event's refunds exist (recorded now, or by an earlier run of the same
    # event), so a replay or a concurrent duplicate run never downgrades the outcome.
    own = result.recorded or any(r.inbound_event_id == event.pk for r in result.already_recorded)
    if not own:
        return ProcessingResult(_settle_ignored(event, outcome=result.outcome))
    return ProcessingResult(_finish(event, InboundEvent.Status.PROCESSED, outcome=result.outcome))


def _settle_ignored(event: InboundEvent, *, outcome: str) -> InboundEvent:
    """IGNORED: the event implies no refund, so its body and headers are not kept
    (platforms.privacy.ingest.event_minimize: ids, topic, outcome and the body hash stay)."""
    _finish(event, InboundEvent.Status.IGNORED, outcome=outcome)
    if ingest.event_minimize(event):
        event.refresh_from_db(fields=["body", "headers", "remote_ip", "redacted_at"])
    return event


def _poisoned(event: InboundEvent, died: int) -> InboundEvent:
    """FAILED without processing: the last `died` runs started and never recorded an outcome."""
    logger.error("Inbound event %s: %s processing runs died without an outcome; FAILED, not run again", event.pk, died)
    poisoned = retrying.poisoned_outcome(died)
    return _finish(event, InboundEvent.Status.FAILED, outcome=poisoned.outcome, error=poisoned.error)


def _retry_later(event: InboundEvent, exc: Exception, *, traceback_text: str) -> InboundEvent:
    """RETRYING at a backed-off time, or FAILED (for an operator) once the streak is past the horizon."""
    event.save(
        update_fields=retrying.transient_failure_set(event, error=_describe_error(exc), traceback_text=traceback_text)
    )
    return event


def _reconcile_event(event: InboundEvent, source: str) -> ReconcileResult:
    adapter = get_adapter(event.platform)
    if adapter is None:
        raise EventIgnored(f"No adapter for platform {event.platform}.")
    if event.connection is None:
        event.connection = _connection_for_app_level_event(event, adapter)
    if event.connection.status == StoreConnection.Status.DISCONNECTED:
        # Accepted in the seconds a receiver's connection cache still held the old secret.
        raise EventIgnored(f"The store connection of {event.connection.merchant} is disconnected.")
    state = adapter.order_state(event)
    merchant = event.connection.merchant
    bag = selectors.bag_for_platform_order(merchant, state.order_ids)
    if bag is None:
        if not state_signals_refund(state):
            raise EventIgnored(
                f"Order {state.order_id} is not a known order of {merchant} and the event carries no refund signal."
            )
        raise OrderUnknown(f"Order {state.order_id} is not (yet) a bag of {merchant}.", order_ids=state.order_ids)
    return order_reconcile(bag, state, event, source=source)


def _permanent_failure_outcome(exc: Exception) -> str:
    """The operator's reading of a permanent failure: the cause in words, and whether a replay can
    help (a refused refund is refused again for the same order; a fixed bug or corrected data is not)."""
    if isinstance(exc, ValidationFailed):
        texts = [t for ts in (exc.field_errors or {}).values() for t in (ts if isinstance(ts, list) else [ts])]
        details = " ".join(str(text) for text in texts)
        return (
            f"The refund this event reports was refused by the refund rules: {exc.message} {details}".strip()
            + " Replaying gives the same answer while the order stays as it is: check the refund on the platform, "
            "and if money moved there that the network did not, record it with a refund notice instead."
        )
    return (
        "Processing failed on a permanent error (see the technical details). Replay the event once the cause "
        "is fixed (a bug fixed, a store connection or data corrected)."
    )


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, ApplicationError):
        details = f" {json.dumps(exc.field_errors, default=str)}" if exc.field_errors else ""
        return f"{type(exc).__name__} ({exc.error_code}): {exc.message}{details}"
    return f"{type(exc).__name__}: {exc}"


def _finish(
    event: InboundEvent,
    status: str,
    *,
    outcome: str = "",
    error: str = "",
    traceback_text: str = "",
    extra_fields: tuple[str, ...] = (),
):
    """A settled outcome (PROCESSED, IGNORED, AWAITING_ORDER, FAILED): no automatic retry is pending
    any more (violet_refunds.retrying.outcome_set). `extra_fields`: other fields the caller set on the
    event, saved with it."""
    fields = retrying.outcome_set(event, status, outcome=outcome, error=error, traceback_text=traceback_text)
    event.save(update_fields=[*fields, *extra_fields])
    return event


# --------------------------------------------------------------------------------------------------
# Events awaiting their order
# --------------------------------------------------------------------------------------------------


def event_awaiting_order_expiry() -> timedelta:
    return timedelta(seconds=settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS)


# What an event that waited for its order in vain becomes. IGNORED (the default) takes it for the
# merchant's own order, not placed through the network (the usual case: a platform tells us about
# every order of the store), so it stays out of triage; FAILED puts each one in front of an operator.
# Either way the body is kept (it carried a refund signal), so a replay by id still works should the
# order turn out to be a network order recorded late.
AWAITING_ORDER_EXPIRED_STATUSES = frozenset({InboundEvent.Status.IGNORED, InboundEvent.Status.FAILED})


def event_awaiting_order_expired_status() -> str:
    status = settings.INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS
    if status not in AWAITING_ORDER_EXPIRED_STATUSES:
        raise ImproperlyConfigured(f"INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS must be IGNORED or FAILED: {status!r}")
    return status


def _expire_awaiting(event: InboundEvent, now: datetime, *, extra_fields: tuple[str, ...] = ()) -> InboundEvent:
    """The wait is over: IGNORED or FAILED (the setting), with an outcome saying why and what to do."""
    return _finish(
        event,
        event_awaiting_order_expired_status(),
        outcome=_awaiting_expired_outcome(event, now),
        extra_fields=extra_fields,
    )


def _await_order(event: InboundEvent, exc: OrderUnknown) -> InboundEvent:
    """AWAITING_ORDER until a bag with the order id appears, or expired (IGNORED or FAILED, the
    setting) once the wait is past the expiry (counted from the first time the event found no bag,
    not from this attempt)."""
    now = timezone.now()
    # The wait keeps running through automatic retries; an operator's replay of a FAILED event
    # starts a new one.
    since = event.awaiting_since if event.awaiting_since and event.status != InboundEvent.Status.FAILED else now
    order_id = (exc.order_ids[0] if exc.order_ids else "")[:255]
    event.order_id = order_id
    event.awaiting_since = since
    awaiting_fields = ("order_id", "awaiting_since")
    if now - since >= event_awaiting_order_expiry():
        return _expire_awaiting(event, now, extra_fields=awaiting_fields)
    expires_at = since + event_awaiting_order_expiry()
    return _finish(
        event,
        InboundEvent.Status.AWAITING_ORDER,
        extra_fields=awaiting_fields,
        outcome=f"{exc.reason.rstrip('.')}: awaiting its order. Processed again automatically as soon as a bag "
        f"with platform order id {order_id} exists for this merchant; {event_awaiting_order_expired_status()} if "
        f"none does by {expires_at:%Y-%m-%d %H:%M:%S} UTC.",
    )


def _awaiting_expired_outcome(event: InboundEvent, now: datetime) -> str:
    since = event.awaiting_since or event.date_created
    waited = (
        f"No bag with platform order id {event.order_id} appeared for this merchant within "
        f"{retrying.duration_text(now - since)} (awaiting since {since:%Y-%m-%d %H:%M:%S} UTC; expiry "
        "INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS)."
    )
    if event_awaiting_order_expired_status() == InboundEvent.Status.IGNORED:
        return (
            f"{waited} Taken for the merchant's own order, not placed through the network: nothing to do "
            "(INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS=IGNORED). Should it be a network order never "
            "recorded here, record the order, then replay this event by id (its body is kept)."
        )
    return (
        f"{waited} Either the order was not placed through the network (nothing to do) or it was never "
        "recorded here: record the order, then replay the event."
    )


@dataclass(frozen=True)
class AwaitingSweepResult:
    enqueued: tuple[int, ...] = ()
    expired: tuple[int, ...] = ()


def events_awaiting_order_sweep(*, now: datetime | None = None) -> AwaitingSweepResult:
    """Beat: events AWAITING_ORDER whose bag now exists are processed again (enqueued; a bag created
    through the ORM is caught at once by the post_save hook, this catches every other way: bulk
    inserts, raw SQL, a lost message); those still without a bag past the expiry end IGNORED or
    FAILED (INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS)."""
    now = now or timezone.now()
    with_bag = selectors.events_awaiting_with_bag(requeued_before=now - event_requeue_after())
    enqueued = retrying.events_requeue_marked(with_bag, now=now, enqueue=_enqueue_processing)
    expired = []
    for event in selectors.events_awaiting_expired(cutoff=now - event_awaiting_order_expiry())[:REQUEUE_BATCH_SIZE]:
        _expire_awaiting(event, now)
        expired.append(event.pk)
    return AwaitingSweepResult(enqueued=tuple(enqueued), expired=tuple(expired))


def bag_appeared(*, bag_id: int, merchant_id: int, external_id: str | None) -> None:
    """A bag was saved with a platform order id (called on commit by platforms.signals): if events
    await that order, process them now instead of at the next sweep. One indexed query otherwise."""
    if not external_id or not selectors.events_awaiting_order_exist(merchant_id=merchant_id, order_id=external_id):
        return
    try:
        tasks.process_events_awaiting_bag.delay(bag_id)
    except Exception:  # broker down: the beat sweep matches them
        logger.exception("Could not enqueue the events awaiting bag %s; the sweep will match them", bag_id)


def events_awaiting_bag_process(bag_id: int) -> Counter:
    """Process the events AWAITING_ORDER that name this bag's platform order; counts by status."""
    bag = Bag.objects.filter(pk=bag_id).only("pk", "merchant_id", "external_id").first()
    if bag is None or not bag.external_id:
        return Counter()
    events = selectors.events_awaiting_order(merchant_id=bag.merchant_id, order_id=bag.external_id)
    return events_replay(events)


def events_replay(events: Iterable[InboundEvent]) -> Counter:
    """Process the given events again, now, through the same service; counts by resulting status.
    A RETRYING event is tried now instead of at its next attempt; a FAILED one that meets a transient
    error again goes back to automatic retries (a new streak, a new horizon)."""
    counts: Counter = Counter()
    for event in events:
        result = event_process(event.pk)
        counts[result.event.status if result else "MISSING"] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# App-level deliveries (/webhooks/ecwid/, /webhooks/wix/; issue #15 item 1, the app-level webhooks
# branch): an event stored without a connection is routed when processed, by the store id in its body.
# --------------------------------------------------------------------------------------------------


def _connection_for_app_level_event(event: InboundEvent, adapter) -> StoreConnection:
    """The one connection naming the event's store (attached to the event), or EventIgnored saying
    why there is none. A store connected after the delivery is found on replay."""
    store_id_of_event = getattr(adapter, "store_id_of_event", None)
    if store_id_of_event is None:
        raise EventIgnored("The event has no store connection.")
    label = getattr(adapter, "store_label", f"{event.platform} store")
    store_id = store_id_of_event(event)
    if not store_id:
        raise EventIgnored(f"No connection: the delivery names no {label}.")
    connections = selectors.connections_for_platform_store(event.platform, store_id)
    if not connections:
        raise EventIgnored(
            f"No connection for {label} {store_id}: no store connection names it. "
            "Connect the store, then replay the event."
        )
    if len(connections) > 1:
        raise EventIgnored(
            f"No connection for {label} {store_id}: several store connections name it "
            f"({', '.join(str(c.merchant) for c in connections)}). Keep one, then replay the event."
        )
    InboundEvent.objects.filter(pk=event.pk, connection__isnull=True).update(connection=connections[0])
    return connections[0]


# --------------------------------------------------------------------------------------------------
# Poll (platforms without usable webhooks: SFCC Option 1)
# --------------------------------------------------------------------------------------------------


def platform_orders_poll(*, now=None) -> list[PollResult]:
    """Ask every adapter that polls to poll each of its stores; one store's failure does not stop
    the others. A store's cursor moves only as far as its poll read successfully (a poll reads
    window after window up to now: a new store or one behind after an outage catches up at once)."""
    results = []
    for adapter in polling_adapters():
        for connection in adapter.connections_to_poll():
            try:
                result = adapter.connection_poll(connection, now=now or timezone.now(), ingest=_ingest_polled)
            except PlatformClientError as exc:
                logger.warning("Polling %s failed: %s", connection, exc.message)
                disconnect.connection_auth_failure(connection, exc)
                StoreConnection.objects.filter(pk=connection.pk).update(last_error=exc.message[:2000])
                results.append(PollResult(connection_id=connection.pk, error=exc.message))
                continue
            if result.error:  # some windows read, then a failure: keep their progress and the error
                logger.warning("Polling %s stopped at %s: %s", connection, result.polled_until, result.error)
            StoreConnection.objects.filter(pk=connection.pk).update(
                last_polled_at=result.polled_until, last_error=result.error[:2000]
            )
            connection.last_polled_at = result.polled_until
            results.append(result)
    return results


def _ingest_polled(connection: StoreConnection, envelope: WebhookEnvelope, body: str) -> bool:
    return event_ingest(connection=connection, envelope=envelope, body=body, headers={}).created

"""Platform signals -> refunds: store raw events, turn them into order states, record what is missing.

- `event_ingest`: store an authenticated delivery once per (platform, event id) and enqueue its
  processing after commit (a duplicate delivery stores nothing and enqueues nothing).
- `event_process`: adapter -> `OrderState` -> the merchant's bag -> `order_reconcile`; the
  event ends PROCESSED, IGNORED (with the reason) or FAILED (with error and traceback).
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
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from platforms import selectors, tasks
from platforms.adapters import get_adapter, polling_adapters
from platforms.adapters.base import (
    EventIgnored,
    OrderState,
    PayloadMalformed,
    PlatformRefund,
    PollResult,
    WebhookEnvelope,
)
from platforms.clients.base import PlatformClientError
from platforms.models import InboundEvent, StoreConnection
from refunds.models import Bag, Refund, RefundSource
from refunds.services import (
    PlatformRefundRequest,
    RefundSkuLine,
    bag_mark_canceled,
    refund_record_platform,
)
from violet_refunds.exceptions import ApplicationError

logger = logging.getLogger(__name__)

# Events whose topic starts with this came from our own polling, not from a platform's webhook.
POLL_TOPIC_PREFIX = "poll/"
# A RECEIVED event older than this lost its processing message (broker down at enqueue).
RECEIVED_EVENT_REQUEUE_AFTER = timedelta(minutes=10)


# --------------------------------------------------------------------------------------------------
# Store connections
# --------------------------------------------------------------------------------------------------


def store_connection_replace_secrets(
    *, connection: StoreConnection, webhook_secret: str | None = None, credentials: dict | None = None
) -> StoreConnection:
    """Replace the webhook secret and/or the platform credentials (both stored encrypted)."""
    update_fields = ["date_last_modified"]
    if webhook_secret is not None:
        connection.webhook_secret = webhook_secret
        update_fields.append("webhook_secret")
    if credentials is not None:
        connection.credentials = credentials
        update_fields.append("credentials")
    if len(update_fields) > 1:
        connection.save(update_fields=update_fields)
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
    connection: StoreConnection,
    envelope: WebhookEnvelope,
    body: str,
    headers: dict,
    remote_ip: str | None = None,
) -> IngestResult:
    """Store the raw event exactly once per (platform, event id); enqueue processing on commit."""
    if not envelope.event_id or len(envelope.event_id) > 255:
        raise PayloadMalformed("The event id is missing or longer than 255 characters.")
    platform = connection.merchant.platform
    try:
        # A savepoint of its own: on PostgreSQL a failed INSERT must not poison an outer transaction.
        with transaction.atomic():
            event = InboundEvent.objects.create(
                platform=platform,
                connection=connection,
                event_id=envelope.event_id,
                topic=envelope.topic[:255],
                headers=headers,
                body=body,
                remote_ip=remote_ip,
            )
            transaction.on_commit(lambda: _enqueue_processing(event.pk))
    except IntegrityError:
        existing = InboundEvent.objects.filter(platform=platform, event_id=envelope.event_id).first()
        if existing is None:
            raise
        return IngestResult(event=existing, created=False)
    return IngestResult(event=event, created=True)


def _enqueue_processing(event_id: int) -> None:
    try:
        tasks.process_inbound_event.delay(event_id)
    except Exception:  # broker down: events_requeue_received picks the event up from the database
        logger.exception("Could not enqueue inbound event %s; it will be requeued", event_id)


def events_requeue_received(*, older_than: timedelta = RECEIVED_EVENT_REQUEUE_AFTER) -> list[int]:
    """Re-enqueue events stored but never processed (a lost message must lose nothing)."""
    ids = list(selectors.events_received_before(timezone.now() - older_than).values_list("pk", flat=True)[:500])
    for event_id in ids:
        _enqueue_processing(event_id)
    return ids


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


@dataclass(frozen=True)
class ProcessingResult:
    event: InboundEvent
    # A transient platform error (timeout, 5xx): the caller may try again later.
    retryable: bool = False


def event_process(event_id: int) -> ProcessingResult | None:
    """Process one stored event (again, if it was processed before: everything downstream is idempotent)."""
    event = selectors.inbound_event_for_processing(event_id)
    if event is None:
        logger.warning("Inbound event %s no longer exists", event_id)
        return None
    InboundEvent.objects.filter(pk=event.pk).update(attempts=F("attempts") + 1)
    source = RefundSource.PLATFORM_POLL if event.topic.startswith(POLL_TOPIC_PREFIX) else RefundSource.PLATFORM_WEBHOOK
    try:
        result = _reconcile_event(event, source)
    except EventIgnored as exc:
        return ProcessingResult(_finish(event, InboundEvent.Status.IGNORED, outcome=exc.reason))
    except Exception as exc:
        logger.warning("Inbound event %s failed: %s", event.pk, exc, exc_info=True)
        return ProcessingResult(
            _finish(
                event,
                InboundEvent.Status.FAILED,
                outcome="Processing failed; replay the event once the cause is fixed.",
                error=_describe_error(exc),
                traceback_text=traceback.format_exc(),
            ),
            retryable=bool(getattr(exc, "transient", False)),
        )
    # PROCESSED when this event's refunds exist (recorded now, or by an earlier run of the same
    # event), so a replay or a concurrent duplicate run never downgrades the outcome.
    own = result.recorded or any(r.inbound_event_id == event.pk for r in result.already_recorded)
    status = InboundEvent.Status.PROCESSED if own else InboundEvent.Status.IGNORED
    return ProcessingResult(_finish(event, status, outcome=result.outcome))


def _reconcile_event(event: InboundEvent, source: str) -> ReconcileResult:
    adapter = get_adapter(event.platform)
    if adapter is None:
        raise EventIgnored(f"No adapter for platform {event.platform}.")
    if event.connection is None:
        raise EventIgnored("The event has no store connection.")
    state = adapter.order_state(event)
    merchant = event.connection.merchant
    bag = selectors.bag_for_platform_order(merchant, state.order_ids)
    if bag is None:
        raise EventIgnored(f"Order {state.order_id} is not a known order of {merchant} (no bag with that id).")
    return order_reconcile(bag, state, event, source=source)


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, ApplicationError):
        details = f" {json.dumps(exc.field_errors, default=str)}" if exc.field_errors else ""
        return f"{type(exc).__name__} ({exc.error_code}): {exc.message}{details}"
    return f"{type(exc).__name__}: {exc}"


def _finish(event: InboundEvent, status: str, *, outcome: str = "", error: str = "", traceback_text: str = ""):
    event.status = status
    event.outcome = outcome
    event.error = error
    event.traceback = traceback_text
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "outcome", "error", "traceback", "processed_at", "date_last_modified"])
    return event


def events_replay(events: Iterable[InboundEvent]) -> Counter:
    """Process the given events again, now, through the same service; counts by resulting status."""
    counts: Counter = Counter()
    for event in events:
        result = event_process(event.pk)
        counts[result.event.status if result else "MISSING"] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# Poll (platforms without usable webhooks: SFCC Option 1)
# --------------------------------------------------------------------------------------------------


def platform_orders_poll(*, now=None) -> list[PollResult]:
    """Ask every adapter that polls to poll each of its stores; one store's failure does not stop
    the others. A store's cursor moves only when its poll succeeded."""
    results = []
    for adapter in polling_adapters():
        for connection in adapter.connections_to_poll():
            try:
                result = adapter.connection_poll(connection, now=now or timezone.now(), ingest=_ingest_polled)
            except PlatformClientError as exc:
                logger.warning("Polling %s failed: %s", connection, exc.message)
                StoreConnection.objects.filter(pk=connection.pk).update(last_error=exc.message[:2000])
                results.append(PollResult(connection_id=connection.pk, error=exc.message))
                continue
            StoreConnection.objects.filter(pk=connection.pk).update(last_polled_at=result.polled_until, last_error="")
            connection.last_polled_at = result.polled_until
            results.append(result)
    return results


def _ingest_polled(connection: StoreConnection, envelope: WebhookEnvelope, body: str) -> bool:
    return event_ingest(connection=connection, envelope=envelope, body=body, headers={}).created

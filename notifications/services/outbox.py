"""The outbox of outbound webhooks: events written in the transaction of the change that causes
them (docs/violet-api.md, Outbound webhooks, docs/reliability.md), and resends.

Notifications know nothing of refunds. The refund domain (refunds.announcements) decides which
events a change makes and renders their body; here they are numbered and stored with one delivery
per subscribed endpoint. An emitter, inside the change's transaction:
  1. `selectors.bag_lock_for_events(bag_id, reads=...)`: lock the bag (its events are numbered one
     writer at a time), reading with it its order, app, the app's endpoints and the emitter's `reads`;
  2. `selectors.outbox_state_with(rows, bag_id=..., dedupe_keys=...)`: read the body's root row
     together with the bag's last sequence and which of the call's dedupe keys already have their
     event; stop here if none is new;
  3. load and render the body (once, whatever the number of events);
  4. `events_write(bag, state, events, payload=...)`: insert the new events in one statement, then
     their deliveries in one (none without endpoints).
Each event has a `dedupe_key` naming the change; emitting it again finds the key and does nothing,
so a reprocessed refund or a replayed platform signal never sends twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
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
from notifications.services.delivery import deliveries_publish
from violet_refunds.exceptions import Conflict, InvalidTransition, ValidationFailed

logger = logging.getLogger(__name__)


# The refund pipeline's throughput is bound by database round trips, so one emit costs a fixed
# handful of queries (the four steps above: lock, state, the body's own loads, two inserts), however
# many events it writes (ORDER_REFUNDED and ORDER_UPDATED share one body) and endpoints there are.
# The dedupe check runs once, after the lock, and is exact there: every event with a dedupe key is
# written under its bag's lock (a key names the bag or one of its refunds); on PostgreSQL (READ
# COMMITTED) a statement that starts after the lock sees all the previous holder committed, and
# SQLite lets one writer at a time. The unique dedupe_key stays the last word: should it ever fire,
# the change's transaction fails instead of sending twice.


def payload_json(payload: Mapping | str) -> str:
    """The exact text an event stores and sends: compact JSON (a str is taken as already rendered)."""
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class OutboxEvent:
    """One event to write: its type, the key naming its change (None: a deliberate copy), and the
    refund it is about, if any."""

    event_type: str
    dedupe_key: str | None
    refund_id: int | None = None
    resent_from: WebhookEvent | None = None


def events_write(
    bag: selectors.LockedBag,
    state: selectors.OutboxState,
    new: Sequence[OutboxEvent],
    *,
    payload: Mapping | str,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[WebhookEvent]:
    """Insert `new` after the bag's last event (`bag` is locked, `state` read after the lock), in
    order, all with the same body (`payload`, rendered once); each gets a delivery per endpoint of
    the app subscribed to its type, or per given endpoint (a resend). Call it inside the change's
    transaction: the new deliveries are handed to the broker on commit."""
    body = payload_json(payload)
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
        transaction.on_commit(lambda: deliveries_publish(delivery_ids))
    return events


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
    if event.event_type == EventType.TEST:
        raise Conflict(
            "A test event is not resent; ask for a new one (POST /v1/events/webhooks/{webhook_id}/test).",
            error_code="test_event_not_resendable",
        )
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
    if not (event.resent_from or event).body:
        # Retention (RETENTION_OUTBOUND_DAYS, docs/privacy.md) removed the body: nothing to resend.
        raise Conflict(
            "The event's body is no longer kept (retention); it cannot be resent.", error_code="event_expired"
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
            transaction.on_commit(lambda: deliveries_publish(due_ids))
        others = [e for e in endpoints if e.pk not in waiting]
        created = []
        if others:
            original = event.resent_from or event
            assert event.bag_id is not None  # every event but TEST (refused above) is about a bag
            bag = selectors.bag_lock_for_events(event.bag_id)
            created = events_write(
                bag,
                selectors.outbox_state(bag.id),
                [OutboxEvent(event.event_type, None, refund_id=event.refund_id, resent_from=original)],
                payload=original.body,
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


TEST_EVENT_MESSAGE = "A test event from violet-refunds: nothing happened to any order."


def webhook_test_event_send(*, endpoint: WebhookEndpoint, actor: str) -> WebhookEvent:
    """A signed TEST event to this one endpoint, asked for by its channel.

    Not about a bag, so it has no sequence: it neither waits behind a bag's unfinished events nor
    holds any back. It travels like any event (the same relay, sender, signature and headers) and is
    recorded the same way, so GET /events shows its delivery's status code and timing; but it is
    attempted once and leaves the endpoint's health alone (delivery records it). Only an ACTIVE
    endpoint is sent to: a paused or disabled one gets nothing until resumed, a test included."""
    if endpoint.status != WebhookEndpoint.Status.ACTIVE:
        raise Conflict(
            f"The webhook is {endpoint.status}; resume it (PATCH status ACTIVE) before testing it.",
            error_code="webhook_not_active",
        )
    now = timezone.now()
    event_id = uuid.uuid4()
    body = {
        "type": EventType.TEST.value,
        "test": True,
        "event_id": str(event_id),
        "app_id": endpoint.app_id,
        "webhook_id": endpoint.pk,
        "message": TEST_EVENT_MESSAGE,
        # The API's datetime format (refunds.representation.API_DATETIME_FORMAT, not importable here).
        "date_created": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            event_id=event_id,
            app_id=endpoint.app_id,
            event_type=EventType.TEST,
            body=payload_json(body),
        )
        delivery = WebhookDelivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=now)
        transaction.on_commit(lambda: deliveries_publish([delivery.pk]))
    logger.info("test event %s for webhook %s asked by %s", event.event_id, endpoint.pk, actor)
    return event

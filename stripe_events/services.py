"""Stripe's own webhooks, the dj-stripe way: verify on the raw body -> store raw once per Stripe event
id -> process in a task, idempotently, retried on transient errors -> replayable.

Processing dispatches on the event's type (HANDLERS). The event is a trigger, never the truth: the
refund domain reads what Stripe holds through payments.gateway (refunds.services.stripe_changes), so
a duplicate, late or out-of-order event changes nothing twice. Types we do not act on are stored
and acknowledged (IGNORED).

  refund.created / refund.updated / refund.failed / charge.refund.updated
      one of our refunds (metadata `refund_id`, or our `gateway_refund_id`): settle it now (an engine
      pass), or, if it had succeeded and Stripe now says failed, FAILED for an operator and
      REFUND_FAILED to the channel; a refund without our metadata: recorded EXTERNAL and flagged
  charge.refunded              the payment's refunds made outside the product, as above; our own
                               refunds of the payment still PROCESSING get a pass
  transfer.reversed            reversals made outside the product: flagged with their amounts
  charge.dispute.created / .updated / .closed
                               the payment's dispute recorded (new refunds refused, refunds in flight
                               stop before the shopper step); flagged for an operator
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments.models import ShopperRefund
from payments.services import payment_dispute_record
from refunds.models import Bag, ReconciliationFinding, Refund, RefundStatus
from refunds.services.findings import finding_open
from refunds.services.stripe_changes import (
    StripeChange,
    shopper_refund_sync,
    stripe_outside_refunds_record,
    stripe_outside_reversals_record,
)
from stripe_events import tasks
from stripe_events.models import StripeEvent, StripeWebhookEndpoint
from violet_refunds import retrying
from violet_refunds.db import row_insert_unless_conflict
from violet_refunds.exceptions import ApplicationError
from violet_refunds.publishing import task_publish
from violet_refunds.retrying import ProcessingResult

logger = logging.getLogger(__name__)

# Request headers never stored with the event.
_HEADERS_NOT_STORED = frozenset({"cookie", "authorization"})


class SignatureInvalid(ApplicationError):
    status_code = 400
    error_code = "signature_invalid"


class PayloadMalformed(ApplicationError):
    status_code = 400
    error_code = "invalid_body"


# --------------------------------------------------------------------------------------------------
# Receive: verify, store once
# --------------------------------------------------------------------------------------------------


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _header(headers, name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def stripe_event_verify(endpoint: StripeWebhookEndpoint, payload: bytes, signature_header: str) -> dict:
    """The Event object of a delivery whose `Stripe-Signature` one of the endpoint's secrets signed
    within its tolerance (the SDK's check, on the raw bytes). SignatureInvalid / PayloadMalformed
    (both 400) otherwise."""
    secrets = endpoint.secrets
    if not secrets:
        raise SignatureInvalid("This endpoint has no signing secret yet; add the one the Stripe Dashboard shows.")
    if not signature_header:
        raise SignatureInvalid("The Stripe-Signature header is missing.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadMalformed("The body is not UTF-8.") from exc
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance=endpoint.tolerance_seconds)
            break
        except stripe.SignatureVerificationError:
            continue
    else:
        raise SignatureInvalid(
            "The Stripe-Signature header does not match the body with any of this endpoint's secrets, "
            f"or its timestamp is more than {endpoint.tolerance_seconds} s old."
        )
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadMalformed("The body is not JSON.") from exc
    if not isinstance(event, dict) or event.get("object") != "event":
        raise PayloadMalformed("The body is not a Stripe Event object.")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        raise PayloadMalformed("The event id is missing or longer than 255 characters.")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        raise PayloadMalformed("The event type is missing or longer than 100 characters.")
    return event


@dataclass(frozen=True)
class IngestResult:
    event: StripeEvent
    created: bool


def stripe_event_ingest(
    *, endpoint: StripeWebhookEndpoint, payload: bytes, headers, remote_ip: str | None = None
) -> IngestResult:
    """Verify and store the raw event exactly once per Stripe event id; enqueue processing on commit.
    Nothing is stored when the signature or the body is refused."""
    event = stripe_event_verify(endpoint, payload, _header(headers, "Stripe-Signature"))
    data = _mapping(event.get("data"))
    obj = _mapping(data.get("object"))
    created = event.get("created")
    stored_headers = {name: value for name, value in headers.items() if name.lower() not in _HEADERS_NOT_STORED}
    if remote_ip:
        stored_headers.setdefault("X-Remote-Addr", remote_ip)
    row = StripeEvent(
        endpoint=endpoint,
        stripe_id=event["id"],
        type=event["type"],
        api_version=str(event.get("api_version") or "")[:64],
        livemode=bool(event.get("livemode")),
        stripe_created=dt.datetime.fromtimestamp(created, tz=dt.UTC) if isinstance(created, int) else None,
        object_id=str(obj.get("id") or "")[:255],
        body=payload.decode("utf-8"),
        headers=stored_headers,
    )
    # One statement, no savepoint (the receiver's hot path, issue #20): a repeated event inserts
    # nothing and raises nothing.
    if not row_insert_unless_conflict(row, conflict_fields=("stripe_id",)):
        existing = StripeEvent.objects.filter(stripe_id=event["id"]).first()
        if existing is None:  # the row it collided with was deleted meanwhile
            raise IntegrityError(f"Stripe event {event['id']} collided with a row that is gone.")
        return IngestResult(existing, created=False)
    # Outside a transaction (the webhook view) the row is committed already and this runs now.
    transaction.on_commit(lambda: _enqueue_processing(row.pk))
    return IngestResult(row, created=True)


def _enqueue_processing(event_id: int) -> None:
    try:
        # One LPUSH of the message apply_async would send (violet_refunds.publishing); in a worker
        # (beat's requeue) or in eager mode it is apply_async itself.
        task_publish(tasks.process_stripe_event, event_id)
    except Exception:  # broker down: stripe_events_requeue picks the event up from the database
        logger.exception("Could not enqueue Stripe event %s; it will be requeued", event_id)


def sandbox_endpoint() -> StripeWebhookEndpoint:
    """The endpoint the built-in Stripe sandbox signs for (STRIPE_SANDBOX_WEBHOOK_SECRET), created on
    first use; a changed setting replaces its secret."""
    secret = settings.STRIPE_SANDBOX_WEBHOOK_SECRET
    endpoint = StripeWebhookEndpoint.objects.filter(is_sandbox=True).first()
    if endpoint is None:
        try:
            with transaction.atomic():
                endpoint = StripeWebhookEndpoint.objects.create(
                    name="Stripe sandbox (in-process)", signing_secrets=[secret], is_sandbox=True
                )
        except IntegrityError:
            endpoint = StripeWebhookEndpoint.objects.get(is_sandbox=True)
    if endpoint.secrets != [secret]:
        endpoint.signing_secrets = [secret]
        endpoint.save(update_fields=["signing_secrets", "date_last_modified"])
    return endpoint


# --------------------------------------------------------------------------------------------------
# Process
# --------------------------------------------------------------------------------------------------


def stripe_event_process(event_id: int, *, only_if_due: bool = False) -> ProcessingResult[StripeEvent] | None:
    """Process one stored event (again, if it was before: everything it does is idempotent).
    `only_if_due` (the task): a settled event, or a RETRYING one before its next attempt, is left alone.
    The retry machinery (transient errors, backoff, horizon, runs that died) is the platform events'
    (violet_refunds.retrying)."""
    event = StripeEvent.objects.filter(pk=event_id).first()
    if event is None:
        logger.warning("Stripe event %s no longer exists", event_id)
        return None
    if only_if_due and (reason := retrying.not_due_reason(event, timezone.now())):
        return ProcessingResult(event, skipped=reason)
    claims = retrying.run_claim(event)
    if retrying.claims_exhausted(claims):
        return ProcessingResult(_poisoned(event, claims - 1))
    try:
        change = _dispatch(event)
    except Exception as exc:
        if retrying.processing_error_is_transient(exc):
            logger.warning("Stripe event %s: transient error, will retry: %s", event.pk, exc, exc_info=True)
            if retrying.is_database_error(exc):
                retrying.database_connections_reset()
            return ProcessingResult(_retry_later(event, exc, traceback_text=traceback.format_exc()))
        logger.warning("Stripe event %s failed: %s", event.pk, exc, exc_info=True)
        return ProcessingResult(
            _save_outcome(
                event,
                StripeEvent.Status.FAILED,
                outcome="Processing failed on a permanent error; replay the event once the cause is fixed.",
                error=f"{type(exc).__name__}: {exc}",
                traceback_text=traceback.format_exc(),
            )
        )
    if change.refunds:
        event.refunds.add(*change.refunds)
    status = StripeEvent.Status.PROCESSED if change.acted else StripeEvent.Status.IGNORED
    return ProcessingResult(_save_outcome(event, status, outcome=change.outcome))


def _poisoned(event: StripeEvent, died: int) -> StripeEvent:
    """FAILED without processing: the last `died` runs started and never recorded an outcome."""
    logger.error("Stripe event %s: %s processing runs died without an outcome; FAILED, not run again", event.pk, died)
    poisoned = retrying.poisoned_outcome(died)
    return _save_outcome(event, StripeEvent.Status.FAILED, outcome=poisoned.outcome, error=poisoned.error)


def _retry_later(event: StripeEvent, exc: Exception, *, traceback_text: str) -> StripeEvent:
    """RETRYING at a backed-off time, or FAILED once the streak is past INBOUND_EVENT_RETRY_HORIZON_SECONDS."""
    error = f"{type(exc).__name__}: {exc}"
    event.save(update_fields=retrying.transient_failure_set(event, error=error, traceback_text=traceback_text))
    return event


def _save_outcome(event: StripeEvent, status: str, *, outcome: str, error: str = "", traceback_text: str = ""):
    """A settled outcome (PROCESSED, IGNORED, FAILED): no automatic retry is pending any more."""
    event.save(
        update_fields=retrying.outcome_set(event, status, outcome=outcome, error=error, traceback_text=traceback_text)
    )
    return event


def stripe_events_requeue(*, now: dt.datetime | None = None) -> list[int]:
    """Beat: re-enqueue events whose message was lost: RECEIVED for longer than the requeue age, or
    RETRYING with a next attempt overdue by as much; at most once per requeue age each."""
    now = now or timezone.now()
    lost = retrying.events_lost(StripeEvent.objects.all(), cutoff=now - retrying.event_requeue_after())
    return retrying.events_requeue_marked(lost, now=now, enqueue=_enqueue_processing)


def stripe_events_replay(events: Iterable[StripeEvent]) -> Counter:
    """Process the given events again, now; counts by resulting status."""
    counts: Counter = Counter()
    for event in events:
        result = stripe_event_process(event.pk)
        counts[result.event.status if result else "MISSING"] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------------


def _dispatch(event: StripeEvent) -> StripeChange:
    handler = HANDLERS.get(event.type)
    if handler is None:
        return StripeChange(f"Stripe event type {event.type} is not acted on; stored and acknowledged.", acted=False)
    body = json.loads(event.body)
    obj = (body.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        return StripeChange("The event carries no data.object; nothing to do.", acted=False)
    return handler(event, obj)


def _id_of(value) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _our_refund_id(obj: dict) -> int | None:
    value = str(_mapping(obj.get("metadata")).get("refund_id", ""))
    return int(value) if value.isdigit() else None


def _on_refund(event: StripeEvent, obj: dict) -> StripeChange:
    """A Refund object: ours (our metadata, or a shopper refund recorded with its id) is settled from
    Stripe's answer; anyone else's is a refund made outside the product."""
    stripe_refund_id = _id_of(obj.get("id"))
    refund_id = _our_refund_id(obj)
    if refund_id is not None or ShopperRefund.objects.filter(gateway_refund_id=stripe_refund_id).exists():
        return shopper_refund_sync(stripe_refund_id=stripe_refund_id, refund_id=refund_id)
    payment_intent_id = _id_of(obj.get("payment_intent"))
    if not payment_intent_id:
        return StripeChange(f"{stripe_refund_id} names no payment intent; nothing of ours.", acted=False)
    return stripe_outside_refunds_record(payment_intent_id=payment_intent_id)


def _on_charge_refunded(event: StripeEvent, obj: dict) -> StripeChange:
    """A Charge object after a refund: record the refunds made outside the product, and give our
    own PROCESSING refunds of the payment a pass (their refund may be the one that settled)."""
    payment_intent_id = _id_of(obj.get("payment_intent"))
    if not payment_intent_id:
        return StripeChange(f"Charge {_id_of(obj.get('id'))} names no payment intent; nothing of ours.", acted=False)
    changes = [stripe_outside_refunds_record(payment_intent_id=payment_intent_id)]
    pending = ShopperRefund.objects.filter(
        payment_transaction__gateway_transaction_id=payment_intent_id,
        refund__status=RefundStatus.PROCESSING,
        gateway_refund_id__isnull=False,
    ).values_list("gateway_refund_id", "refund_id")
    for stripe_refund_id, refund_id in pending:
        changes.append(shopper_refund_sync(stripe_refund_id=stripe_refund_id or "", refund_id=refund_id))
    acted = [c for c in changes if c.acted]
    if not acted:
        return StripeChange(" ".join(c.outcome for c in changes), acted=False)
    return StripeChange(" ".join(c.outcome for c in acted), tuple(r for c in acted for r in c.refunds))


def _on_transfer_reversed(event: StripeEvent, obj: dict) -> StripeChange:
    return stripe_outside_reversals_record(transfer_id=_id_of(obj.get("id")))


def _on_dispute(event: StripeEvent, obj: dict) -> StripeChange:
    """A Dispute object: the payment's dispute as of this event; refunds in flight are named for an
    operator (the engine stops them before the shopper step while the dispute blocks refunds)."""
    dispute_id = _id_of(obj.get("id"))
    status = str(obj.get("status") or "")
    amount = obj["amount"] if isinstance(obj.get("amount"), int) else 0
    payment, changed = payment_dispute_record(
        charge_id=_id_of(obj.get("charge")),
        payment_intent_id=_id_of(obj.get("payment_intent")),
        dispute_id=dispute_id,
        status=status,
        reason=str(obj.get("reason") or ""),
        amount=amount,
        reported_at=event.stripe_created or event.date_created,
    )
    if payment is None:
        return StripeChange(f"Dispute {dispute_id} is about no payment of ours.", acted=False)
    if not changed:
        return StripeChange(
            f"Dispute {dispute_id} on {payment.gateway_transaction_id}: already recorded as {payment.dispute_status} "
            "(this event is a repeat or older than the one applied); nothing changes."
        )
    bags = list(Bag.objects.filter(order_id=payment.order_id).order_by("pk"))
    in_flight = list(Refund.objects.filter(bag__in=bags, status=RefundStatus.PROCESSING).order_by("pk"))
    blocked = payment.refunds_blocked_by_dispute
    flight = (
        f" Refunds in flight, stopped before the shopper step: {', '.join(str(r.pk) for r in in_flight)}."
        if in_flight and blocked
        else ""
    )
    what = "blocks new refunds of this payment" if blocked else "no longer blocks refunds"
    finding_open(
        key=f"stripe-dispute:{dispute_id}:{'open' if blocked else 'closed'}:{status}",
        origin=ReconciliationFinding.Origin.STRIPE_EVENT,
        kind="dispute" if blocked else "dispute_closed",
        detail=f"Dispute {dispute_id} ({obj.get('reason') or 'no reason given'}) on payment "
        f"{payment.gateway_transaction_id} is {status}: it {what}.{flight}",
        bag=bags[0] if len(bags) == 1 else None,
    )
    return StripeChange(f"Dispute {dispute_id} on {payment.gateway_transaction_id} is {status}; it {what}.{flight}")


HANDLERS: dict[str, Callable[[StripeEvent, dict], StripeChange]] = {
    "refund.created": _on_refund,
    "refund.updated": _on_refund,
    "refund.failed": _on_refund,
    "charge.refund.updated": _on_refund,
    "charge.refunded": _on_charge_refunded,
    "transfer.reversed": _on_transfer_reversed,
    "charge.dispute.created": _on_dispute,
    "charge.dispute.updated": _on_dispute,
    "charge.dispute.closed": _on_dispute,
}
# The events to enable on the endpoint in the Stripe Dashboard (README).
EVENTS_TO_ENABLE = tuple(HANDLERS)


def stripe_endpoint_secret_add(*, endpoint: StripeWebhookEndpoint, secret: str, drop_others: bool = False) -> None:
    """Add a signing secret (the Dashboard's `whsec_…`); with `drop_others` it becomes the only one
    (after a roll, once Stripe no longer signs with the old secret)."""
    secret = (secret or "").strip()
    if not secret.startswith("whsec_"):
        raise ValueError("A Stripe signing secret starts with whsec_.")
    secrets = [] if drop_others else [s for s in endpoint.secrets if s != secret]
    endpoint.signing_secrets = [secret, *secrets]
    endpoint.save(update_fields=["signing_secrets", "date_last_modified"])

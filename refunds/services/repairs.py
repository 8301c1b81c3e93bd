"""Operator repairs and the stuck-refund sweep.

Operators repair with `refund_retry`, `refund_mark_external`, `refund_cancel` and
`refund_error_resolve`; each takes the refund's advisory lock (exclusive against the engine), checks
the status allows the action, and writes the change to the audit trail naming the operator. The
beat's `refund_sweep_stuck` re-enqueues PROCESSING refunds nobody is working on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from payments.gateway import TransientGatewayError, get_gateway
from payments.models import ShopperRefund, TransferReversal
from refunds import announcements as notifications
from refunds.models import OrderSku, ReasonCode, Refund, RefundError, RefundEvent, RefundSku, RefundStatus, RefundStep
from refunds.selectors import refunds_stuck_queryset
from refunds.services.bags import bag_update_refund_state
from refunds.services.engine import enqueue_processing
from refunds.services.events import event_record, operator_actor
from refunds.services.forwarding import forwarding_operator_guard
from refunds.services.steps import (
    REFUND_STATUSES_WITHOUT_MONEY,
    is_step_object,
    next_generation_key,
    reversal_step,
)
from violet_refunds.exceptions import InvalidTransition, ValidationFailed
from violet_refunds.locks import try_exclusive


def refund_sweep_stuck(*, limit: int = 500) -> list[int]:
    """Re-enqueue stuck refunds (a lost message loses nothing): those whose next pass is overdue by
    REFUND_STUCK_AFTER_SECONDS. Each is marked (next_attempt_at = now, a compare-and-set on "still
    stuck") before its message goes out, so another sweep run before that delivery, even a
    concurrent one, does not enqueue it again within the stuck window. A copy that arrives anyway is
    a no-op: the advisory lock while a pass runs, the early check after it."""
    now = timezone.now()
    candidates = list(refunds_stuck_queryset(now).order_by("date_created").values_list("pk", flat=True)[:limit])
    requeued = []
    for refund_id in candidates:
        if not refunds_stuck_queryset(now).filter(pk=refund_id).update(next_attempt_at=now, date_last_modified=now):
            continue  # another sweep run took it, or a pass moved it on meanwhile
        RefundEvent.objects.create(
            refund_id=refund_id, kind=RefundEvent.Kind.REQUEUED, actor="sweep", message="Re-enqueued stuck refund."
        )
        enqueue_processing(refund_id, due=now)
        requeued.append(refund_id)
    return requeued


def _money_moved(refund: Refund) -> bool:
    return (
        TransferReversal.objects.filter(refund=refund, status=TransferReversal.Status.COMPLETE).exists()
        or ShopperRefund.objects.filter(refund=refund)
        .exclude(gateway_refund_id__isnull=True)
        .exclude(status=ShopperRefund.Status.FAILED)
        .exists()
    )


def _unrecorded_stripe_object(refund: Refund) -> str | None:
    """The id of a Stripe reversal/refund made for a step whose answer we never recorded (sent at
    least once, still PENDING), or None. Cancelling then would free the amount for a second refund."""
    gateway = get_gateway()
    try:
        for reversal in TransferReversal.objects.filter(
            refund=refund, status=TransferReversal.Status.PENDING, attempts__gt=0
        ).select_related("transfer"):
            step = reversal_step(reversal.transfer.recipient)
            transfer_id = reversal.transfer.gateway_transfer_id
            if transfer_id is None:  # never made on Stripe (no reversal is sent for it): nothing there
                continue
            for found in gateway.list_transfer_reversals(transfer_id):
                if is_step_object(found, refund, step):
                    return found.id
        shopper = (
            ShopperRefund.objects.filter(refund=refund, status=ShopperRefund.Status.PENDING, attempts__gt=0)
            .select_related("payment_transaction")
            .first()
        )
        if shopper is not None:
            payment_intent_id = shopper.payment_transaction.gateway_transaction_id
            for found_refund in gateway.list_refunds(payment_intent_id=payment_intent_id):
                if found_refund.status not in REFUND_STATUSES_WITHOUT_MONEY and is_step_object(
                    found_refund, refund, RefundStep.SHOPPER_REFUND
                ):
                    return found_refund.id
    except TransientGatewayError as exc:
        raise InvalidTransition(
            f"Could not confirm with Stripe that no money moved for this refund ({exc.message}); try again."
        ) from exc
    return None


@contextmanager
def _refund_locked_for_operator(
    refund: Refund,
    *,
    allowed: Collection[str],
    action: str,
    before_row_lock: Callable[[], None] | None = None,
) -> Iterator[Refund]:
    """The refund, exclusive against the engine (advisory lock) and row-locked, if its status allows
    `action`; `before_row_lock` runs in between (a Stripe look-up must not hold a row lock)."""
    with try_exclusive("refund", refund.pk) as acquired:
        if not acquired:
            raise InvalidTransition("This refund is being processed right now; try again in a moment.")
        if before_row_lock is not None:
            before_row_lock()
        with transaction.atomic():
            current = Refund.objects.select_for_update().get(pk=refund.pk)
            if current.status not in allowed:
                raise InvalidTransition(f"A {current.status} refund cannot be {action}.")
            forwarding_operator_guard(current, action=action)
            yield current


def _operator_status_change(current: Refund, *, to_status: str, kind: str, user, note: str, **fields) -> None:
    """Save the new status (and fields), audit it naming the operator, and tell the channel."""
    previous = current.status
    current.status = to_status
    for name, value in fields.items():
        setattr(current, name, value)
    current.save(update_fields=["status", *fields, "date_last_modified"])
    event_record(
        current,
        kind,
        actor=operator_actor(user),
        user=user,
        from_status=previous,
        to_status=to_status,
        message=note,
    )
    notifications.refund_event_emit(current)


def refund_retry(*, refund: Refund, user=None, note: str = "") -> Refund:
    """Put a FAILED / PARTIALLY_COMPLETED (or stuck PROCESSING) refund back to work. Steps that
    failed definitively get a fresh idempotency key generation (Stripe would replay the stored
    error for the old key); steps with an unknown outcome keep theirs and are looked up first."""
    retryable = {RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED, RefundStatus.PROCESSING}
    with _refund_locked_for_operator(refund, allowed=retryable, action="retried") as current:
        for reversal in TransferReversal.objects.filter(refund=current, status=TransferReversal.Status.FAILED):
            step = reversal_step(reversal.transfer.recipient)
            reversal.idempotency_key = next_generation_key(current, step, reversal.idempotency_key)
            reversal.status = TransferReversal.Status.PENDING
            reversal.attempts = 0
            reversal.save(update_fields=["idempotency_key", "status", "attempts", "date_last_modified"])
        shopper = ShopperRefund.objects.filter(refund=current, status=ShopperRefund.Status.FAILED).first()
        if shopper is not None:
            shopper.idempotency_key = next_generation_key(current, RefundStep.SHOPPER_REFUND, shopper.idempotency_key)
            shopper.status = ShopperRefund.Status.PENDING
            shopper.gateway_refund_id = None
            shopper.failure_reason = ""
            shopper.attempts = 0
            shopper.save()
        _operator_status_change(
            current,
            to_status=RefundStatus.PROCESSING,
            kind=RefundEvent.Kind.RETRY_REQUESTED,
            user=user,
            note=note,
            attempts=0,
            next_attempt_at=timezone.now(),
            date_completed=None,
        )
    # Enqueued once the advisory lock is released: a worker that took the message while the lock
    # was still held would see the refund "being processed" and drop it (and an in-process task run
    # by this very thread is refused as a nested lock), leaving the refund PROCESSING until the sweep.
    transaction.on_commit(lambda: enqueue_processing(current.pk, due=current.next_attempt_at))
    return current


def refund_mark_external(*, refund: Refund, user=None, note: str) -> Refund:
    """The money was settled outside the network (operator or notice says so): stop processing."""
    if not (note or "").strip():
        raise ValidationFailed("Say how the money moved.", field_errors={"note": ["A note is required."]})
    allowed = {RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED, RefundStatus.PROCESSING}
    with _refund_locked_for_operator(refund, allowed=allowed, action="marked external") as current:
        _operator_status_change(
            current,
            to_status=RefundStatus.EXTERNAL,
            kind=RefundEvent.Kind.MARKED_EXTERNAL,
            user=user,
            note=note.strip(),
            next_attempt_at=None,
            processing_started_at=None,
        )
        bag_update_refund_state(bag_id=current.bag_id)
    return current


def refund_cancel(*, refund: Refund, user=None, note: str = "") -> Refund:
    """Stop a refund before any money moved; its amounts and quantities become refundable again."""

    def refuse_if_stripe_holds_an_unrecorded_object():
        found_at_stripe = _unrecorded_stripe_object(refund)
        if found_at_stripe:
            raise InvalidTransition(
                f"Stripe already holds {found_at_stripe} for this refund, sent before its answer was lost: "
                "money may have moved. Retry the refund to record it instead of canceling."
            )

    allowed = {RefundStatus.PROCESSING, RefundStatus.FAILED}
    with _refund_locked_for_operator(
        refund, allowed=allowed, action="canceled", before_row_lock=refuse_if_stripe_holds_an_unrecorded_object
    ) as current:
        if _money_moved(current):
            raise InvalidTransition("Money has already moved for this refund; it cannot be canceled.")
        for line in RefundSku.objects.filter(refund=current):
            OrderSku.objects.filter(pk=line.order_sku_id).update(
                quantity_refunded=F("quantity_refunded") - line.quantity_refunded
            )
        _operator_status_change(
            current,
            to_status=RefundStatus.CANCELED,
            kind=RefundEvent.Kind.CANCELED,
            user=user,
            note=note,
            next_attempt_at=None,
            processing_started_at=None,
        )
    return current


def refund_error_resolve(*, error: RefundError, user=None, note: str = "") -> RefundError:
    if error.resolved:
        raise InvalidTransition("This error is already resolved.")
    now = timezone.now()
    updated = RefundError.objects.filter(pk=error.pk, resolved=False).update(
        resolved=True, date_resolved=now, resolved_by=user
    )
    if not updated:
        raise InvalidTransition("This error is already resolved.")
    error.refresh_from_db()
    event_record(
        error.refund,
        RefundEvent.Kind.ERROR_RESOLVED,
        actor=operator_actor(user),
        user=user,
        message=note or f"Resolved error {error.error_code}: {error.error_message[:200]}",
        data={"error_id": error.pk},
    )
    return error


def refund_reason_change(*, refund: Refund, user=None, reason_code: str, reason: str, note: str = "") -> Refund:
    """Correct a refund's descriptive reason (never its money or status), audited in its trail with
    the old and new values: the one way an operator edits a recorded refund."""
    if reason_code not in ReasonCode.values:
        raise ValidationFailed(
            "Unknown reason code.", field_errors={"reason_code": [f"{reason_code!r} is not a reason code."]}
        )
    reason = (reason or "").strip()
    with transaction.atomic():
        current = Refund.objects.select_for_update().get(pk=refund.pk)
        before = (current.reason_code, current.reason)
        if before == (reason_code, reason):
            raise InvalidTransition("The reason is already that; nothing changed.")
        current.reason_code, current.reason = reason_code, reason
        current.save(update_fields=["reason_code", "reason", "date_last_modified"])
        labels = dict(ReasonCode.choices)
        message = (
            f"Reason changed from {labels.get(before[0], before[0])} ({before[1] or 'no text'}) "
            f"to {labels.get(reason_code, reason_code)} ({reason or 'no text'})."
        )
        event_record(
            current,
            RefundEvent.Kind.NOTE,
            actor=operator_actor(user),
            user=user,
            message=f"{message} {note.strip()}".strip(),
            data={"reason_code": [before[0], reason_code], "reason": [before[1], reason]},
        )
    return current

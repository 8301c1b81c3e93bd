"""The money steps of a refund, one Stripe call each: merchant reversal, channel reversal, shopper refund.

Every step sends an idempotency key derived from our own ids and metadata naming the refund and
the step (`step_metadata`), so a Stripe object can always be traced back to the one step it was made
for (`is_step_object`). Before a step is sent again after an unknown outcome, Stripe is searched
for that object first; the reconciliation (`refunds.reconciliation`) uses the same matching.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from payments.gateway import IdempotencyConflictError, PermanentGatewayError, TransientGatewayError
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.errors import RefundErrorCode, code_for_gateway_error
from refunds.models import Refund, RefundError, RefundEvent, RefundStep
from refunds.services.events import WORKER, event_record
from violet_refunds.crashpoints import crash_point


def reversal_step(recipient: str) -> str:
    return RefundStep.MERCHANT_REVERSAL if recipient == Recipient.MERCHANT else RefundStep.CHANNEL_REVERSAL


def step_key(refund: Refund, step: str, generation: int = 1) -> str:
    """Stripe idempotency key derived from our own ids: the same step of the same refund always
    sends the same key; only an operator retry after a definitive failure moves to a new generation."""
    base = f"refund-{refund.pk}-{step.lower().replace('_', '-')}"
    return base if generation == 1 else f"{base}-g{generation}"


def next_generation_key(refund: Refund, step: str, old_key: str) -> str:
    """The key of the next generation of a step (an operator retry, or a key Stripe stored a 5xx under)."""
    generation = 1
    if "-g" in old_key:
        suffix = old_key.rsplit("-g", 1)[1]
        generation = int(suffix) if suffix.isdigit() else 1
    return step_key(refund, step, generation + 1)


def step_metadata(refund: Refund, step: str) -> dict:
    return {"refund_id": str(refund.pk), "bag_id": str(refund.bag_id), "step": step}


def run_reversal(gateway, refund: Refund, reversal: TransferReversal) -> str | None:
    """One reversal call. Returns a description of a transient problem, or None when the row reached
    a final state (COMPLETE or FAILED)."""
    step = reversal_step(reversal.transfer.recipient)
    transfer_id = reversal.transfer.gateway_transfer_id
    return _run_step(
        refund,
        reversal,
        step,
        lookup=lambda: gateway.list_transfer_reversals(transfer_id),
        call=lambda key: gateway.reverse_transfer(
            transfer_id=transfer_id, amount=reversal.amount, idempotency_key=key, metadata=step_metadata(refund, step)
        ),
        on_success=lambda result, recovered: _complete_reversal(refund, reversal, result.id, step, recovered),
        on_permanent=lambda exc: _fail_step(refund, step, exc, reversal=reversal),
    )


def run_shopper_refund(gateway, refund: Refund, shopper: ShopperRefund) -> str | None:
    step = RefundStep.SHOPPER_REFUND
    if shopper.gateway_refund_id:
        # Stripe accepted it earlier and said "pending": only its final status is missing.
        try:
            result = gateway.retrieve_refund(shopper.gateway_refund_id)
        except TransientGatewayError as exc:
            return f"{step}: {exc.message}"
        _apply_shopper_result(refund, shopper, result)
        return None
    payment_intent_id = shopper.payment_transaction.gateway_transaction_id
    return _run_step(
        refund,
        shopper,
        step,
        # A failed or canceled refund moved no money and may belong to an earlier key generation
        # (same metadata): it must not pass for this attempt's outcome.
        lookup=lambda: [
            found
            for found in gateway.list_refunds(payment_intent_id=payment_intent_id)
            if found.status not in REFUND_STATUSES_WITHOUT_MONEY
        ],
        call=lambda key: gateway.refund_payment(
            payment_intent_id=payment_intent_id,
            amount=shopper.amount,
            idempotency_key=key,
            metadata=step_metadata(refund, step),
        ),
        on_success=lambda result, recovered: _apply_shopper_result(refund, shopper, result, recovered),
        on_permanent=lambda exc: _fail_step(refund, step, exc, shopper=shopper),
    )


# Stripe refund statuses after which nothing was (or stays) refunded.
REFUND_STATUSES_WITHOUT_MONEY = frozenset({"failed", "canceled"})

# A transient error whose response Stripe stores under the idempotency key (a 500 from inside the
# endpoint): the same key would replay it forever, so once a look-up proves nothing was created the
# step moves on to a fresh key. Connection errors, timeouts, 429 and 409 are not stored: the same key
# is kept (if the first request is still in flight at Stripe, reusing its key is what prevents a double).
_STORED_TRANSIENT_PREFIX = "transient:5"


def stripe_object_refund_id(obj: Any) -> int | None:
    """The refund a Stripe refund or reversal names in its metadata; None when the engine did not
    make it (no or unreadable `refund_id`: made in the dashboard, by hand)."""
    value = obj.metadata.get("refund_id", "")
    return int(value) if value.isdigit() else None


def is_refund_object(obj: Any, refund: Refund) -> bool:
    """A Stripe refund or reversal created for some step of this refund."""
    return obj.metadata.get("refund_id") == str(refund.pk)


def is_step_object(obj: Any, refund: Refund, step: str) -> bool:
    """A Stripe refund or reversal created for this step of this refund (metadata we always send)."""
    return is_refund_object(obj, refund) and obj.metadata.get("step") == step


def step_objects(objects: Iterable[Any], refund: Refund, step: str) -> list[Any]:
    """The objects of a Stripe listing (a payment's refunds, a transfer's reversals) made for this step."""
    return [obj for obj in objects if is_step_object(obj, refund, step)]


def _run_step(refund, row, step: str, *, lookup, call, on_success, on_permanent) -> str | None:
    model = type(row)
    if row.attempts > 0:
        # An earlier call may have succeeded with its response lost (or its key pruned): look first.
        try:
            found = next(
                (obj for obj in lookup() if is_step_object(obj, refund, step)),
                None,
            )
        except TransientGatewayError as exc:
            return f"{step}: {exc.message}"
        if found is not None:
            on_success(found, True)
            return None
        if row.error_code.startswith(_STORED_TRANSIENT_PREFIX):
            row.idempotency_key = next_generation_key(refund, step, row.idempotency_key)
            model.objects.filter(pk=row.pk).update(idempotency_key=row.idempotency_key)
    model.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    try:
        result = call(row.idempotency_key)
    except TransientGatewayError as exc:
        model.objects.filter(pk=row.pk).update(
            error_code=f"transient:{exc.http_status or 'network'}", error_message=exc.message[:2000]
        )
        event_record(refund, RefundEvent.Kind.STEP_FAILED, actor=WORKER, message=f"{step}: {exc.message} (will retry)")
        return f"{step}: {exc.message}"
    except PermanentGatewayError as exc:
        on_permanent(exc)
        return None
    crash_point(f"after_stripe:{step}")
    on_success(result, False)
    return None


def _complete_reversal(refund, reversal, gateway_id: str, step: str, recovered: bool = False) -> None:
    with transaction.atomic():
        updated = TransferReversal.objects.filter(pk=reversal.pk, status=TransferReversal.Status.PENDING).update(
            status=TransferReversal.Status.COMPLETE,
            gateway_reversal_id=gateway_id,
            error_code="",
            error_message="",
        )
        if not updated:
            return
        # One UPDATE: the new total and the status it implies, computed by the database row itself.
        new_total = F("reversed_amount") + reversal.amount
        Transfer.objects.filter(pk=reversal.transfer_id).update(
            reversed_amount=new_total,
            status=Case(
                When(amount__lte=new_total, then=Value(Transfer.Status.REVERSED)),
                default=Value(Transfer.Status.PARTIALLY_REVERSED),
            ),
            date_last_modified=timezone.now(),
        )
        event_record(
            refund,
            RefundEvent.Kind.STEP_SUCCEEDED,
            actor=WORKER,
            message=f"{step}: reversed {reversal.amount} {reversal.currency} ({gateway_id})"
            + (" (found at Stripe after a lost response)" if recovered else ""),
            data={"step": step, "gateway_id": gateway_id, "amount": reversal.amount},
        )


def _apply_shopper_result(refund, shopper: ShopperRefund, result, recovered: bool = False) -> None:
    status_map = {
        "succeeded": ShopperRefund.Status.SUCCEEDED,
        "failed": ShopperRefund.Status.FAILED,
        "canceled": ShopperRefund.Status.FAILED,
    }
    new_status = status_map.get(result.status, ShopperRefund.Status.PENDING)
    with transaction.atomic():
        # Conditional UPDATE: only a PENDING row takes the result, so a repeat records nothing twice.
        updated = ShopperRefund.objects.filter(pk=shopper.pk, status=ShopperRefund.Status.PENDING).update(
            gateway_refund_id=result.id,
            status=new_status,
            failure_reason=result.failure_reason or "",
            error_code="",
            error_message="",
            date_last_modified=timezone.now(),
        )
        if not updated:
            shopper.refresh_from_db(fields=["status", "gateway_refund_id"])
            return
        shopper.gateway_refund_id, shopper.status = result.id, new_status
        current = shopper
        step = RefundStep.SHOPPER_REFUND
        if new_status == ShopperRefund.Status.SUCCEEDED:
            PaymentTransaction.objects.filter(pk=current.payment_transaction_id).update(
                amount_refunded=F("amount_refunded") + current.amount
            )
            event_record(
                refund,
                RefundEvent.Kind.STEP_SUCCEEDED,
                actor=WORKER,
                message=f"{step}: refunded {current.amount} {current.currency} to the shopper ({result.id})"
                + (" (found at Stripe after a lost response)" if recovered else ""),
                data={"step": step, "gateway_id": result.id, "amount": current.amount},
            )
        elif new_status == ShopperRefund.Status.FAILED:
            RefundError.objects.create(
                refund=refund,
                error_code=RefundErrorCode.SHOPPER_REFUND_FAILED,
                error_message=f"Stripe could not refund the shopper ({result.failure_reason or result.status}).",
                step=step,
                gateway_code=result.failure_reason or "",
            )
            event_record(refund, RefundEvent.Kind.STEP_FAILED, actor=WORKER, message=f"{step}: {result.status}")


def _fail_step(refund, step: str, exc: PermanentGatewayError, *, reversal=None, shopper=None) -> None:
    code = code_for_gateway_error(exc.code, exc.error_type)
    if isinstance(exc, IdempotencyConflictError):
        code = RefundErrorCode.IDEMPOTENCY_CONFLICT
    message = exc.message or str(exc)
    with transaction.atomic():
        if reversal is not None:
            TransferReversal.objects.filter(pk=reversal.pk).update(
                status=TransferReversal.Status.FAILED, error_code=exc.code or "", error_message=message
            )
            reversal.status = TransferReversal.Status.FAILED
        if shopper is not None:
            ShopperRefund.objects.filter(pk=shopper.pk).update(
                status=ShopperRefund.Status.FAILED, error_code=exc.code or "", error_message=message
            )
            shopper.status = ShopperRefund.Status.FAILED
        RefundError.objects.create(
            refund=refund, error_code=code, error_message=message, step=step, gateway_code=exc.code or ""
        )
        event_record(
            refund,
            RefundEvent.Kind.STEP_FAILED,
            actor=WORKER,
            message=f"{step}: {message}",
            data={"step": step, "gateway_code": exc.code, "error_code": int(code)},
        )

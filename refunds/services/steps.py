"""The money steps of a refund, one Stripe call each: merchant reversal, channel reversal, shopper refund.

Every step sends an idempotency key derived from our own ids and metadata naming the refund and
the step (`step_metadata`), so a Stripe object can always be traced back to the one step it was made
for (`is_step_object`). Before a step is sent again after an unknown outcome, Stripe is searched
for that object first; the reconciliation (`refunds.reconciliation`) uses the same matching.

What a PENDING step row knows about Stripe is kept in its `error_code` (see `outcome_unknown`):
- `unknown:<why>`: a call was sent and no definitive answer came back (`sent`: no answer yet, the
  worker may have died mid-call; `network`: connection error or timeout, the SDK cannot tell whether
  the request left; `5xx`: Stripe's server errors are indeterminate; `409`: a request with the same
  key is still executing at Stripe). Stripe may hold the object: only a look-up settles it.
- `absent:<why>`: a look-up since proved Stripe holds nothing for the step (`<why>` keeps the old
  reason: after a `5xx`, which Stripe stores under the key, the next call uses a new key generation).
- `not-executed:429`: Stripe rate-limited the call before executing it; nothing can exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from payments.gateway import PermanentGatewayError, TransientGatewayError
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.errors import RefundErrorCode, code_for_gateway_error
from refunds.models import Refund, RefundError, RefundEvent, RefundStep
from refunds.services.events import WORKER, event_record
from violet_refunds.crashpoints import crash_point
from violet_refunds.money import format_amount


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


UNKNOWN = "unknown:"
ABSENT = "absent:"
NOT_EXECUTED = "not-executed:"
SENT = f"{UNKNOWN}sent"
# HTTP statuses at which Stripe documents that the request was not executed (rate limiting runs
# before the idempotency layer). Every other transient error leaves the outcome unknown.
NOT_EXECUTED_STATUSES = frozenset({429})


@dataclass(frozen=True)
class StepProblem:
    """Why a step is not final after this pass. `unknown`: Stripe may hold (or still make) the
    step's object, so the refund must not end until a look-up settles it. `called`: the problem
    came from a call that could move money, made in this pass."""

    step: str
    message: str
    unknown: bool = False
    called: bool = False

    def __str__(self) -> str:
        return f"{self.step}: {self.message}"


def outcome_unknown(row: TransferReversal | ShopperRefund) -> bool:
    """A PENDING step sent to Stripe in its current key generation (attempts > 0) whose outcome no
    definitive answer or look-up has settled. Anything not proven is unknown: a row left by a worker
    killed mid-call, or written before these markers existed, counts as unknown."""
    if row.status != row.Status.PENDING:
        return False
    if isinstance(row, ShopperRefund) and row.gateway_refund_id:
        return False  # Stripe answered: the refund exists (pending at Stripe), re-read, never re-sent
    return row.attempts > 0 and not row.error_code.startswith((ABSENT, NOT_EXECUTED))


def _reason(error_code: str) -> str:
    return error_code.split(":", 1)[1] if ":" in error_code else "sent"


def run_reversal(
    gateway, refund: Refund, reversal: TransferReversal, *, before_call: Callable[[], None] | None
) -> StepProblem | None:
    """One reversal step: a look-up first if its outcome is unknown, then (if `before_call` is given,
    i.e. the retry budget allows) the call. Returns the problem left, or None when the row reached a
    final state (COMPLETE or FAILED)."""
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
        before_call=before_call,
    )


def run_shopper_refund(
    gateway, refund: Refund, shopper: ShopperRefund, *, before_call: Callable[[], None] | None
) -> StepProblem | None:
    step = RefundStep.SHOPPER_REFUND
    if shopper.gateway_refund_id:
        # Stripe accepted it earlier and said "pending": only its final status is missing. A failed
        # re-read leaves a live refund at Stripe, so the refund must not end: unknown.
        try:
            result = gateway.retrieve_refund(shopper.gateway_refund_id)
        except TransientGatewayError as exc:
            return StepProblem(step, f"re-reading the pending refund failed: {exc.message}", unknown=True)
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
        before_call=before_call,
    )


# Stripe refund statuses after which nothing was (or stays) refunded.
REFUND_STATUSES_WITHOUT_MONEY = frozenset({"failed", "canceled"})


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


def _run_step(
    refund, row, step: str, *, lookup, call, on_success, on_permanent, before_call: Callable[[], None] | None
) -> StepProblem | None:
    model = type(row)
    if outcome_unknown(row):
        # An earlier call may have succeeded with its answer lost (or its key pruned): look first.
        try:
            found = next((obj for obj in lookup() if is_step_object(obj, refund, step)), None)
        except TransientGatewayError as exc:
            return StepProblem(step, f"outcome unknown and the look-up failed: {exc.message}", unknown=True)
        if found is not None:
            on_success(found, True)
            return None
        # Proven absent: Stripe holds nothing for this step.
        row.error_code = f"{ABSENT}{_reason(row.error_code)}"
        if before_call is None:
            model.objects.filter(pk=row.pk).update(error_code=row.error_code)
    if before_call is None:
        # The retry budget is spent: a look-up-only pass sends nothing that could move money.
        return StepProblem(step, "the retry budget is spent; not sent again")
    if row.error_code.startswith(f"{ABSENT}5"):
        # Stripe stored the 5xx under the old key and would replay it forever; nothing was created.
        row.idempotency_key = next_generation_key(refund, step, row.idempotency_key)
    # Marked unknown before the request leaves: a worker killed mid-call leaves it unknown, so the
    # next pass looks it up before anything else. One transaction with the pass's attempt charge.
    with transaction.atomic():
        before_call()
        model.objects.filter(pk=row.pk).update(
            attempts=F("attempts") + 1, error_code=SENT, error_message="", idempotency_key=row.idempotency_key
        )
    row.attempts += 1
    row.error_code = SENT
    try:
        result = call(row.idempotency_key)
    except TransientGatewayError as exc:
        unknown = exc.http_status not in NOT_EXECUTED_STATUSES
        row.error_code = f"{UNKNOWN if unknown else NOT_EXECUTED}{exc.http_status or 'network'}"
        model.objects.filter(pk=row.pk).update(error_code=row.error_code, error_message=exc.message[:2000])
        then = "outcome unknown, will look it up at Stripe" if unknown else "not executed by Stripe, will retry"
        event_record(refund, RefundEvent.Kind.STEP_FAILED, actor=WORKER, message=f"{step}: {exc.message} ({then})")
        return StepProblem(step, exc.message, unknown=unknown, called=True)
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
            message=f"{step}: reversed {format_amount(reversal.amount, reversal.currency)} ({gateway_id})"
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
                message=(
                    f"{step}: refunded {format_amount(current.amount, current.currency)} to the shopper ({result.id})"
                )
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

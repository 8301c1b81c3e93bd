"""The processing engine: `refund_process` moves a refund's money through Stripe exactly once.

The `process_refund` task calls `refund_process`, which holds the refund's advisory lock, plans the
steps once (a reversal per transfer and the shopper refund, with frozen amounts and idempotency
keys), runs them (refunds.services.steps) merchant first, then channel, then shopper, and either
schedules a retry with backoff or decides the refund's final status from its step rows.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from payments import splits
from payments.gateway import get_gateway
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds import announcements as notifications
from refunds import tasks
from refunds.amounts import bag_totals
from refunds.errors import RefundErrorCode
from refunds.models import Bag, Refund, RefundError, RefundEvent, RefundStatus, RefundStep
from refunds.services.bags import bag_update_refund_state
from refunds.services.events import WORKER, event_record
from refunds.services.steps import reversal_step, run_reversal, run_shopper_refund, step_key
from violet_refunds.locks import try_exclusive
from violet_refunds.money import AmountParts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessOutcome:
    status: str
    retry_in: float | None = None  # seconds until the task should run again, if at all
    detail: str = ""


def _backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter, always below the broker's visibility timeout."""
    cap = min(
        settings.REFUND_RETRY_BACKOFF_MAX_SECONDS,
        settings.REFUND_RETRY_BACKOFF_BASE_SECONDS * (2 ** max(attempt - 1, 0)),
        max(settings.CELERY_VISIBILITY_TIMEOUT - 60, 1),
    )
    return max(0.5, random.uniform(cap / 2, cap))


def _pending_recheck_seconds(attempt: int) -> float:
    """When to re-read a refund Stripe holds as pending; below the visibility timeout like every
    countdown, or Redis would deliver a second copy while the first only waits."""
    return float(
        min(
            settings.REFUND_RETRY_BACKOFF_MAX_SECONDS,
            30 * max(attempt, 1),
            max(settings.CELERY_VISIBILITY_TIMEOUT - 60, 1),
        )
    )


def refund_process(*, refund_id: int) -> ProcessOutcome:
    """Move the money for one refund: reverse the merchant and channel transfers, then refund the
    shopper. Safe to run any number of times, concurrently or after a crash at any point."""
    with try_exclusive("refund", refund_id) as acquired:
        if not acquired:
            return ProcessOutcome(status="LOCKED", detail="another worker is processing this refund")
        return _process_locked(refund_id)


def _process_locked(refund_id: int) -> ProcessOutcome:
    refund = Refund.objects.select_related("bag", "bag__order", "bag__merchant").filter(pk=refund_id).first()
    if refund is None:
        return ProcessOutcome(status="MISSING")
    if refund.status != RefundStatus.PROCESSING:
        return ProcessOutcome(status=refund.status, detail="nothing to do")

    now = timezone.now()
    Refund.objects.filter(pk=refund.pk).update(
        attempts=F("attempts") + 1, processing_started_at=now, date_last_modified=now
    )
    # Only the holder of the advisory lock writes `attempts`, so the new value is known without a read.
    refund.attempts += 1
    refund.processing_started_at = now
    if refund.attempts == 1:
        event_record(refund, RefundEvent.Kind.CLAIMED, actor=WORKER, message="Processing started.")
    if refund.attempts > settings.REFUND_MAX_ATTEMPTS:
        # Every attempt that ends normally records an outcome or schedules a retry within the cap, so
        # getting here means earlier deliveries died mid-way (a poison message with
        # task_reject_on_worker_lost requeues forever): stop and hand it to an operator.
        return _finish(
            refund,
            failed_error=(
                RefundErrorCode.RETRIES_EXHAUSTED,
                f"Processing was interrupted {refund.attempts - 1} times without recording an outcome. "
                "Retrying looks each step up at Stripe before calling again.",
            ),
        )

    plan_error = _ensure_plan(refund)
    if plan_error:
        return _finish(refund, failed_error=plan_error)

    gateway = get_gateway()
    transient: list[str] = []
    reversals = list(
        TransferReversal.objects.filter(refund=refund).select_related("transfer").order_by("transfer__recipient")
    )
    # Merchant first, then channel (docs/architecture.md), then the shopper.
    reversals.sort(key=lambda r: 0 if r.transfer.recipient == Recipient.MERCHANT else 1)
    for reversal in reversals:
        if reversal.status == TransferReversal.Status.PENDING:
            problem = run_reversal(gateway, refund, reversal)
            if problem:
                transient.append(problem)
    if transient:
        return _schedule_retry(refund, transient)

    shopper = ShopperRefund.objects.select_related("payment_transaction").get(refund=refund)
    if shopper.status == ShopperRefund.Status.PENDING:
        problem = run_shopper_refund(gateway, refund, shopper)
        if problem:
            return _schedule_retry(refund, [problem])
        if shopper.status == ShopperRefund.Status.PENDING:
            # Stripe accepted the refund but it is not final (card refunds can still fail).
            countdown = _pending_recheck_seconds(refund.attempts)
            Refund.objects.filter(pk=refund.pk).update(
                next_attempt_at=timezone.now() + timedelta(seconds=countdown),
                attempts=F("attempts") - 1,  # waiting on Stripe is not a failed attempt
            )
            return ProcessOutcome(status=RefundStatus.PROCESSING, retry_in=countdown, detail="pending at Stripe")
    return _finish(refund)


def _ensure_plan(refund: Refund) -> tuple[RefundErrorCode, str] | None:
    """Create the step rows (reversal per transfer, shopper refund) once, with frozen amounts and
    idempotency keys, so every later attempt repeats exactly the same Stripe calls."""
    if ShopperRefund.objects.filter(refund=refund).exists():
        return None
    payment = PaymentTransaction.objects.filter(order_id=refund.bag.order_id).first()
    if payment is None:
        return (RefundErrorCode.MISSING_PAYMENT, "The order has no payment transaction to refund.")
    if payment.currency != refund.refund_currency:
        return (
            RefundErrorCode.CURRENCY_MISMATCH,
            f"The payment is in {payment.currency} but the refund is in {refund.refund_currency}.",
        )
    with transaction.atomic():
        bag = Bag.objects.select_for_update().get(pk=refund.bag_id)
        if ShopperRefund.objects.filter(refund=refund).exists():
            return None
        # Refunds already planned (they have their step rows) are what earlier reversals covered.
        before = (
            Refund.objects.filter(bag=bag, shopper_refund__isnull=False)
            .exclude(status=RefundStatus.CANCELED)
            .aggregate(s=Sum("sub_total_amount"), h=Sum("shipping_amount"), t=Sum("tax_amount"))
        )
        refunded_before = AmountParts(sub_total=before["s"] or 0, shipping=before["h"] or 0, tax=before["t"] or 0)
        this = AmountParts(sub_total=refund.sub_total_amount, shipping=refund.shipping_amount, tax=refund.tax_amount)
        transfers = {
            t.recipient: t
            for t in Transfer.objects.filter(bag=bag).exclude(
                status__in=[Transfer.Status.FAILED, Transfer.Status.BYPASSED, Transfer.Status.PENDING]
            )
        }
        reversed_before = _reversed_before(transfers.values(), refund)
        try:
            legs = {
                recipient: splits.TransferLeg(
                    amount=transfer.amount,
                    bag_amount=transfer.bag_amount,
                    reversed_before=reversed_before.get(transfer.pk, (0, 0))[0],
                    reversed_before_bag=reversed_before.get(transfer.pk, (0, 0))[1],
                )
                for recipient, transfer in transfers.items()
            }
            plan = splits.plan_reversals(
                bag=bag_totals(bag),
                refunded_before=refunded_before,
                this_refund=this,
                merchant=legs.get(Recipient.MERCHANT),
                channel=legs.get(Recipient.DEVELOPER),
            )
        except ValueError as exc:
            return (RefundErrorCode.INCONSISTENT_AMOUNTS, f"Cannot split this refund across the transfers: {exc}")
        for recipient, leg_plan in ((Recipient.MERCHANT, plan.merchant), (Recipient.DEVELOPER, plan.channel)):
            if leg_plan is None or leg_plan.amount <= 0:
                continue
            transfer = transfers[recipient]
            TransferReversal.objects.create(
                refund=refund,
                transfer=transfer,
                amount=leg_plan.amount,
                bag_amount=leg_plan.bag_amount,
                currency=transfer.currency,
                idempotency_key=step_key(refund, reversal_step(recipient)),
            )
        ShopperRefund.objects.create(
            refund=refund,
            payment_transaction=payment,
            amount=refund.amount,
            currency=payment.currency,
            idempotency_key=step_key(refund, RefundStep.SHOPPER_REFUND),
        )
        _store_reversal_amounts(refund, plan, transfers)
    return None


def _reversed_before(transfers, refund: Refund) -> dict[int, tuple[int, int]]:
    """transfer id -> (amount, bag_amount) that other, not canceled refunds reverse from it."""
    rows = (
        TransferReversal.objects.filter(transfer__in=list(transfers))
        .exclude(refund=refund)
        .exclude(refund__status=RefundStatus.CANCELED)
        .values("transfer_id")
        .annotate(amount=Sum("amount"), bag_amount=Sum("bag_amount"))
    )
    return {row["transfer_id"]: (row["amount"] or 0, row["bag_amount"] or 0) for row in rows}


def _store_reversal_amounts(refund: Refund, plan: splits.ReversalPlan, transfers: dict) -> None:
    values = {"platform_currency": settings.PLATFORM_CURRENCY}
    for prefix, recipient, leg in (
        ("merchant", Recipient.MERCHANT, plan.merchant),
        ("developer", Recipient.DEVELOPER, plan.channel),
    ):
        amount = leg.amount if leg else 0
        currency = transfers[recipient].currency if recipient in transfers else settings.PLATFORM_CURRENCY
        values[f"{prefix}_transfer_reversal_amount_platform_currency"] = amount
        # The USD figure is only known exactly when the transfer itself moved USD.
        values[f"{prefix}_transfer_reversal_amount_usd"] = amount if currency == "USD" else None
        if recipient in transfers:
            values["platform_currency"] = currency
    Refund.objects.filter(pk=refund.pk).update(**values)


def _schedule_retry(refund: Refund, problems: list[str]) -> ProcessOutcome:
    if refund.attempts >= settings.REFUND_MAX_ATTEMPTS:
        return _finish(
            refund,
            failed_error=(
                RefundErrorCode.RETRIES_EXHAUSTED,
                f"Stripe kept failing after {refund.attempts} attempts: {'; '.join(problems)}. "
                "Retrying looks each step up at Stripe before calling again.",
            ),
        )
    countdown = _backoff_seconds(refund.attempts)
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=countdown))
    event_record(
        refund,
        RefundEvent.Kind.RETRY_SCHEDULED,
        actor=WORKER,
        message=f"Attempt {refund.attempts} hit a transient error; retrying in {countdown:.1f}s.",
        data={"problems": problems, "countdown": countdown},
    )
    return ProcessOutcome(status=RefundStatus.PROCESSING, retry_in=countdown, detail="; ".join(problems))


def _finish(refund: Refund, failed_error: tuple[RefundErrorCode, str] | None = None) -> ProcessOutcome:
    """Decide the refund's final status from its step rows (docs/architecture.md)."""
    with transaction.atomic():
        current = Refund.objects.select_for_update().get(pk=refund.pk)
        if current.status != RefundStatus.PROCESSING:
            return ProcessOutcome(status=current.status, detail="already final")
        if failed_error:
            RefundError.objects.create(refund=current, error_code=failed_error[0], error_message=failed_error[1])
        shopper = ShopperRefund.objects.filter(refund=current).first()
        reversal_states = set(TransferReversal.objects.filter(refund=current).values_list("status", flat=True))
        if (
            (failed_error and (shopper is None or shopper.status != ShopperRefund.Status.SUCCEEDED))
            or shopper is None
            or shopper.status == ShopperRefund.Status.FAILED
        ):
            new_status = RefundStatus.FAILED
        elif TransferReversal.Status.FAILED in reversal_states or TransferReversal.Status.PENDING in reversal_states:
            new_status = RefundStatus.PARTIALLY_COMPLETED
        else:
            new_status = RefundStatus.COMPLETED
        current.status = new_status
        current.processing_started_at = None
        current.next_attempt_at = None
        if new_status in (RefundStatus.COMPLETED, RefundStatus.PARTIALLY_COMPLETED):
            current.date_completed = timezone.now()
        current.save(
            update_fields=["status", "processing_started_at", "next_attempt_at", "date_completed", "date_last_modified"]
        )
        event_record(
            current,
            RefundEvent.Kind.STATUS_CHANGED,
            actor=WORKER,
            from_status=RefundStatus.PROCESSING,
            to_status=new_status,
            message=failed_error[1] if failed_error else "",
        )
        notifications.refund_event_emit(current)
        bag_update_refund_state(bag_id=current.bag_id)
    return ProcessOutcome(status=new_status)


def enqueue_processing(refund_id: int, countdown: float | None = None) -> None:
    """Hand the refund to a worker (after commit, callers make sure); a broker outage loses nothing."""
    try:
        if countdown:
            tasks.process_refund.apply_async((refund_id,), countdown=countdown)
        else:
            tasks.process_refund.delay(refund_id)
    except Exception:  # broker down: the stuck-refund sweep will pick it up from the database
        logger.exception("Could not enqueue refund %s; the sweep will retry it", refund_id)

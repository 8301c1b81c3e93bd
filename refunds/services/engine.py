"""The processing engine: `refund_process` moves a refund's money through Stripe exactly once.

The `process_refund` task calls `refund_process`, which holds the refund's advisory lock, plans the
steps once (a reversal per transfer and the shopper refund, with frozen amounts and idempotency
keys), runs them (refunds.services.steps) merchant first, then channel, then shopper, and either
schedules the next pass or decides the refund's final status from its step rows.

The rules (docs/reliability.md, "Unknown outcomes and the attempt budget"):
- An unknown outcome is never final. While a step's outcome is unknown (`steps.outcome_unknown`)
  the refund stays PROCESSING: `_finish` refuses to decide, the out-of-retries path and the
  poison-message guard schedule a look-up instead of failing. Look-ups have no budget; they back
  off slowly (`_lookup_backoff_seconds`, capped by REFUND_LOOKUP_BACKOFF_MAX_SECONDS).
- Attempts are Stripe attempts. `Refund.attempts` grows in one place, `_attempt_charge`: once per
  pass that sends Stripe a call that could move money (charged before the first such call), and
  once for a pass that died before recording any outcome without having been charged. Look-ups,
  pending re-reads, early or locked deliveries never count. With REFUND_MAX_ATTEMPTS spent a pass
  only looks up.
- A delivery of the task before the refund's `next_attempt_at` is EARLY and does nothing, unless
  it carries that very time as `due` (the message scheduled for it; in-process execution runs a
  countdown at once).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
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
from refunds.services.forwarding import forwarding_blocks_money
from refunds.services.steps import (
    StepProblem,
    outcome_unknown,
    reversal_step,
    run_reversal,
    run_shopper_refund,
    step_key,
)
from violet_refunds.locks import try_exclusive
from violet_refunds.money import AmountParts
from violet_refunds.retrying import database_connections_reset

logger = logging.getLogger(__name__)


EARLY = "EARLY"
AWAITING_PLATFORM = "AWAITING_PLATFORM"  # a channel refund the merchant's platform has not accepted yet


@dataclass(frozen=True)
class ProcessOutcome:
    status: str
    retry_in: float | None = None  # seconds until the task should run again, if at all
    detail: str = ""
    due: datetime | None = None  # the next_attempt_at written for that run (its message carries it)


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


def _lookup_backoff_seconds(waited: float) -> float:
    """When to look up an unknown outcome again: as long again as it has been unknown (from the
    retry base up to REFUND_LOOKUP_BACKOFF_MAX_SECONDS), with jitter, below the visibility timeout."""
    cap = min(settings.REFUND_LOOKUP_BACKOFF_MAX_SECONDS, max(settings.CELERY_VISIBILITY_TIMEOUT - 60, 1))
    target = min(cap, max(settings.REFUND_RETRY_BACKOFF_BASE_SECONDS, waited))
    return max(0.5, random.uniform(target / 2, target))


@dataclass(frozen=True)
class DatabaseRetry:
    countdown: float
    due: str | None  # the refund's next_attempt_at the retry message carries (ISO), if any


def database_retry_plan(refund_id: int, exc: BaseException, *, due: str | None, retries: int) -> DatabaseRetry | None:
    """The next pass after a database error ended this one (issue #20: at 2 x 64 slots PostgreSQL
    refused connections and refunds waited 15 minutes for the sweep). The dead connection is closed
    so the next query opens a fresh one (Django checks health only when a task starts). Backoff like
    a transient Stripe error, below the visibility timeout; after REFUND_DATABASE_RETRY_LIMIT retries
    the sweep takes over (None). Nothing about money is decided here: the pass that runs next finds
    every step row as the failed pass left it (a call in flight is `unknown:sent` and looked up).

    The retry carries the due time the refund waits for: the one it was delivered with, or, when the
    failed pass had already written a new next_attempt_at (its answer was lost after the commit), that
    one, read back once the database answers again, so the retry is never taken for an early copy."""
    database_connections_reset()
    if retries >= settings.REFUND_DATABASE_RETRY_LIMIT:
        logger.error(
            "refund %s: database error after %d retries (%s); the stuck-refund sweep takes over",
            refund_id,
            retries,
            exc,
        )
        return None
    countdown = _backoff_seconds(retries + 1)
    try:
        waiting_for = Refund.objects.filter(pk=refund_id).values_list("next_attempt_at", flat=True).first()
    except (OperationalError, InterfaceError):
        database_connections_reset()
        waiting_for = None
    if waiting_for is not None and waiting_for > timezone.now():
        due = waiting_for.isoformat()
        countdown = max(countdown, (waiting_for - timezone.now()).total_seconds())
    logger.warning("refund %s: database error (%s); retrying in %.1fs", refund_id, exc, countdown)
    return DatabaseRetry(countdown=countdown, due=due)


def refund_process(*, refund_id: int, as_delivery: bool = False, due: str | None = None) -> ProcessOutcome:
    """Move the money for one refund: reverse the merchant and channel transfers, then refund the
    shopper. Safe to run any number of times, concurrently or after a crash at any point.

    `as_delivery` (every run of the process_refund task): a delivery before the refund's
    `next_attempt_at` is EARLY and does nothing (no attempt, no event), unless `due` (ISO time) is
    that very `next_attempt_at`: the message scheduled for it. A direct call runs a pass now."""
    with try_exclusive("refund", refund_id) as acquired:
        if not acquired:
            return ProcessOutcome(status="LOCKED", detail="another worker is processing this refund")
        return _process_locked(refund_id, as_delivery=as_delivery, due=due)


def _is_early(refund: Refund, due: str | None, now: datetime) -> bool:
    if refund.next_attempt_at is None or refund.next_attempt_at <= now:
        return False
    try:
        return due is None or datetime.fromisoformat(due) != refund.next_attempt_at
    except ValueError:
        return True


def _attempt_charge(refund: Refund, when: datetime) -> dict:
    """The one place `Refund.attempts` grows: the fields of the UPDATE that charges one attempt made
    at `when`. A pass is charged when `last_attempt_at >= processing_started_at`, which tells the
    next pass whether a pass that died had been charged."""
    refund.attempts += 1
    refund.last_attempt_at = when
    return {"attempts": F("attempts") + 1, "last_attempt_at": when}


class _Pass:
    """One run of the steps. It may send calls that could move money while the budget lasts, and
    is charged one attempt before the first of them."""

    def __init__(self, refund: Refund):
        self.refund = refund
        self.calls = 0
        self.may_call = refund.attempts < settings.REFUND_MAX_ATTEMPTS

    @property
    def before_call(self):
        return self._before_call if self.may_call else None

    def _before_call(self) -> None:
        if self.calls == 0:
            # Only the holder of the advisory lock writes `attempts`: the new value is known without a read.
            Refund.objects.filter(pk=self.refund.pk).update(**_attempt_charge(self.refund, timezone.now()))
        self.calls += 1


def _process_locked(refund_id: int, *, as_delivery: bool, due: str | None) -> ProcessOutcome:
    # One read for what every pass needs: the refund, its bag, its forwarding and its shopper step
    # (absent before the plan).
    refund = (
        Refund.objects.select_related(
            "bag", "bag__order", "bag__merchant", "forwarding", "shopper_refund__payment_transaction"
        )
        .filter(pk=refund_id)
        .first()
    )
    if refund is None:
        return ProcessOutcome(status="MISSING")
    if refund.status != RefundStatus.PROCESSING:
        return ProcessOutcome(status=refund.status, detail="nothing to do")

    now = timezone.now()
    # Issue 14: a channel refund's money moves only once the merchant's platform accepted it (or
    # cannot be written to, or an operator said to go without it).
    waiting = forwarding_blocks_money(refund, now=now)
    if waiting:
        return ProcessOutcome(status=AWAITING_PLATFORM, detail=waiting)
    if as_delivery and _is_early(refund, due, now):
        return ProcessOutcome(status=EARLY, detail=f"not due before {refund.next_attempt_at}")

    claim: dict = {"processing_started_at": now, "date_last_modified": now}
    # A pass that ends normally clears processing_started_at; finding it set means the last pass died
    # (worker killed, poison message) before recording an outcome. Charge it if it was not charged.
    died_at = refund.processing_started_at
    interrupted = died_at is not None and (refund.last_attempt_at is None or refund.last_attempt_at < died_at)
    if interrupted and died_at is not None:
        # Charged at the time of the pass that died, so this pass still counts as uncharged.
        claim.update(_attempt_charge(refund, died_at))
    refund.processing_started_at = now
    note = (
        f"The previous pass stopped without recording an outcome; counted as attempt {refund.attempts}."
        if interrupted
        else ""
    )

    shopper: ShopperRefund | None = getattr(refund, "shopper_refund", None)
    if shopper is None:
        # The first pass: the claim is written in the plan's transaction (no Stripe call before it).
        planned = _ensure_plan(refund, claim=claim, note=note)
        if not isinstance(planned, _Plan):
            return _finish(refund, failed_error=planned)
        reversals, shopper = planned.reversals, planned.shopper
    else:
        _claim(refund, claim, note)
        reversals = list(TransferReversal.objects.filter(refund=refund).select_related("transfer"))
    # Merchant first, then channel (docs/architecture.md), then the shopper.
    reversals.sort(key=lambda r: 0 if r.transfer.recipient == Recipient.MERCHANT else 1)
    run = _Pass(refund)
    if not run.may_call and not _needs_lookup(reversals, shopper):
        # Poison-message guard and out-of-retries: the budget is spent and every step's outcome is
        # known, so nothing more will be sent. Decided before touching Stripe (a message that kills
        # its worker in the gateway stops here too).
        return _finish(
            refund,
            failed_error=(
                RefundErrorCode.RETRIES_EXHAUSTED,
                f"The retry budget is spent ({refund.attempts} attempts, interrupted passes included) and "
                "Stripe holds nothing for the steps left. Retrying looks each step up at Stripe before calling again.",
            ),
        )

    gateway = get_gateway()
    problems: list[StepProblem] = []
    for reversal in reversals:
        if reversal.status == TransferReversal.Status.PENDING:
            problem = run_reversal(gateway, refund, reversal, before_call=run.before_call)
            if problem:
                problems.append(problem)
    if problems:
        return _after_problems(refund, problems, run)

    if _shopper_step_blocked_by_dispute(shopper):
        # Stop before the shopper step: the card network returns the money through the dispute, and
        # Stripe would refuse the refund anyway. Nothing was sent for this step, so FAILED is true.
        payment = shopper.payment_transaction
        return _finish(
            refund,
            failed_error=(
                RefundErrorCode.CHARGE_DISPUTED,
                f"The shopper disputed the payment ({payment.dispute_id}, {payment.dispute_status}); the shopper "
                "refund was not sent. An operator decides once the dispute closes.",
            ),
        )
    if shopper.status == ShopperRefund.Status.PENDING:
        problem = run_shopper_refund(gateway, refund, shopper, before_call=run.before_call)
        if problem:
            return _after_problems(refund, [problem], run)
        if shopper.status == ShopperRefund.Status.PENDING:
            # Stripe accepted the refund but it is not final (card refunds can still fail).
            countdown = _pending_recheck_seconds(refund.attempts)
            return _schedule(refund, countdown, detail="pending at Stripe", unknown=False)
    return _finish(refund)


def _claim(refund: Refund, claim: dict, note: str) -> None:
    """Mark the pass started (and charge a pass that died uncharged), with its audit note."""
    with transaction.atomic():
        Refund.objects.filter(pk=refund.pk).update(**claim)
        if note:
            event_record(refund, RefundEvent.Kind.NOTE, actor=WORKER, message=note)


def _shopper_step_blocked_by_dispute(shopper: ShopperRefund) -> bool:
    """A shopper step never sent to Stripe (or proven absent there) whose payment is disputed."""
    if shopper.status != ShopperRefund.Status.PENDING or shopper.gateway_refund_id or outcome_unknown(shopper):
        return False
    return shopper.payment_transaction.refunds_blocked_by_dispute


def _needs_lookup(reversals: list[TransferReversal], shopper: ShopperRefund) -> bool:
    """Whether Stripe still has something to tell: a step whose outcome is unknown, or a shopper
    refund pending at Stripe."""
    if any(outcome_unknown(reversal) for reversal in reversals) or outcome_unknown(shopper):
        return True
    return shopper.status == ShopperRefund.Status.PENDING and bool(shopper.gateway_refund_id)


@dataclass(frozen=True)
class _Plan:
    reversals: list[TransferReversal]
    shopper: ShopperRefund


def _ensure_plan(refund: Refund, *, claim: dict, note: str) -> _Plan | tuple[RefundErrorCode, str]:
    """Create the step rows (reversal per transfer, shopper refund) once, with frozen amounts and
    idempotency keys, so every later attempt repeats exactly the same Stripe calls. Called only
    while the refund has no shopper step, under its advisory lock (so by one pass at a time; the
    one-to-one shopper row refuses a second plan anyway). One transaction, set-based: the bag lock
    with the amounts already planned, the transfers with what other refunds reversed, the rows in
    bulk, the refund's reversal amounts and `claim`, the audit event."""
    with transaction.atomic():
        payment = PaymentTransaction.objects.filter(order_id=refund.bag.order_id).first()
        if payment is None:
            error: tuple[RefundErrorCode, str] = (
                RefundErrorCode.MISSING_PAYMENT,
                "The order has no payment transaction to refund.",
            )
            _claim(refund, claim, note)
            return error
        if payment.currency != refund.refund_currency:
            _claim(refund, claim, note)
            return (
                RefundErrorCode.CURRENCY_MISMATCH,
                f"The payment is in {payment.currency} but the refund is in {refund.refund_currency}.",
            )
        # The bag lock first, then what it guards in statements of their own: in READ COMMITTED a
        # statement that waited for a row lock still reads every other table as of its start, so sums
        # read with the lock could miss a refund planned by the transaction that held it.
        bag = Bag.objects.select_for_update().get(pk=refund.bag_id)
        # Refunds already planned (they have their step rows) are what earlier reversals covered.
        before = (
            Refund.objects.filter(bag=bag, shopper_refund__isnull=False)
            .exclude(status=RefundStatus.CANCELED)
            .aggregate(s=Sum("sub_total_amount"), h=Sum("shipping_amount"), t=Sum("tax_amount"))
        )
        refunded_before = AmountParts(sub_total=before["s"] or 0, shipping=before["h"] or 0, tax=before["t"] or 0)
        this = AmountParts(sub_total=refund.sub_total_amount, shipping=refund.shipping_amount, tax=refund.tax_amount)
        # What other, not canceled refunds reverse from each transfer.
        others = (
            TransferReversal.objects.filter(transfer=OuterRef("pk"))
            .exclude(refund=refund)
            .exclude(refund__status=RefundStatus.CANCELED)
            .values("transfer")
        )
        transfers = {
            t.recipient: t
            for t in Transfer.objects.filter(bag=bag)
            .exclude(status__in=[Transfer.Status.FAILED, Transfer.Status.BYPASSED, Transfer.Status.PENDING])
            .annotate(
                reversed_before=_subquery_sum(others, "amount"),
                reversed_before_bag=_subquery_sum(others, "bag_amount"),
            )
        }
        try:
            legs = {
                recipient: splits.TransferLeg(
                    amount=transfer.amount,
                    bag_amount=transfer.bag_amount,
                    reversed_before=transfer.reversed_before,
                    reversed_before_bag=transfer.reversed_before_bag,
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
            _claim(refund, claim, note)
            return (RefundErrorCode.INCONSISTENT_AMOUNTS, f"Cannot split this refund across the transfers: {exc}")
        reversals = TransferReversal.objects.bulk_create(
            [
                TransferReversal(
                    refund=refund,
                    transfer=transfers[recipient],
                    amount=leg_plan.amount,
                    bag_amount=leg_plan.bag_amount,
                    currency=transfers[recipient].currency,
                    idempotency_key=step_key(refund, reversal_step(recipient)),
                )
                for recipient, leg_plan in ((Recipient.MERCHANT, plan.merchant), (Recipient.DEVELOPER, plan.channel))
                if leg_plan is not None and leg_plan.amount > 0
            ]
        )
        shopper = ShopperRefund.objects.create(
            refund=refund,
            payment_transaction=payment,
            amount=refund.amount,
            currency=payment.currency,
            idempotency_key=step_key(refund, RefundStep.SHOPPER_REFUND),
        )
        Refund.objects.filter(pk=refund.pk).update(**claim, **_reversal_amounts(plan, transfers))
        if note:
            event_record(refund, RefundEvent.Kind.NOTE, actor=WORKER, message=note)
        event_record(refund, RefundEvent.Kind.CLAIMED, actor=WORKER, message="Processing started.")
    return _Plan(reversals=reversals, shopper=shopper)


def _subquery_sum(rows, column: str) -> Coalesce:
    """SUM(column) over `rows` (a queryset grouped by its outer reference) as a scalar subquery, 0 if none."""
    return Coalesce(Subquery(rows.annotate(total=Sum(column)).values("total")[:1]), Value(0))


def _reversal_amounts(plan: splits.ReversalPlan, transfers: dict) -> dict:
    """The refund's reversal amount fields (the Order Refund object's) from its plan."""
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
    return values


def _after_problems(refund: Refund, problems: list[StepProblem], run: _Pass) -> ProcessOutcome:
    """The next pass after a pass that left problems: a retry while the budget lasts, a look-up
    while an outcome is unknown (never FAILED then), else FAILED for an operator."""
    unknown = any(p.unknown for p in problems)
    described = "; ".join(str(p) for p in problems)
    if refund.attempts < settings.REFUND_MAX_ATTEMPTS and run.calls:
        countdown = _backoff_seconds(refund.attempts)
        return _schedule(
            refund,
            countdown,
            detail=described,
            unknown=unknown,
            kind=RefundEvent.Kind.RETRY_SCHEDULED,
            message=f"Attempt {refund.attempts} hit a transient error; retrying in {countdown:.1f}s.",
            problems=problems,
        )
    if unknown or refund.attempts < settings.REFUND_MAX_ATTEMPTS:
        return _schedule_lookup(refund, problems)
    return _finish(
        refund,
        failed_error=(
            RefundErrorCode.RETRIES_EXHAUSTED,
            f"Stripe kept failing after {refund.attempts} attempts: {described}. "
            "Retrying looks each step up at Stripe before calling again.",
        ),
    )


def _schedule_lookup(refund: Refund, problems: list[StepProblem]) -> ProcessOutcome:
    """Look the unknown steps up again later, with the slow look-up backoff and no budget."""
    now = timezone.now()
    since = refund.outcome_unknown_since or now
    countdown = _lookup_backoff_seconds((now - since).total_seconds())
    unknown = [p for p in problems if p.unknown]
    return _schedule(
        refund,
        countdown,
        detail="; ".join(str(p) for p in problems),
        unknown=bool(unknown),
        kind=RefundEvent.Kind.LOOKUP_SCHEDULED,
        message=(
            f"Outcome unknown for {', '.join(p.step for p in unknown)} (Stripe may hold it): looking it up at "
            f"Stripe again in {countdown:.1f}s; nothing is sent until Stripe answers."
            if unknown
            else f"Looking up at Stripe again in {countdown:.1f}s."
        ),
        problems=problems,
    )


def _schedule(
    refund: Refund,
    countdown: float,
    *,
    detail: str,
    unknown: bool,
    kind: str | None = None,
    message: str = "",
    problems: list[StepProblem] | None = None,
) -> ProcessOutcome:
    """End the pass with the refund still PROCESSING: its next pass at now + countdown (the
    message carries that time as `due`), whether an outcome is unknown, and the audit event."""
    now = timezone.now()
    due = now + timedelta(seconds=countdown)
    fields: dict = {"next_attempt_at": due, "processing_started_at": None, "date_last_modified": now}
    if unknown and refund.outcome_unknown_since is None:
        fields["outcome_unknown_since"] = refund.outcome_unknown_since = now
    elif not unknown and refund.outcome_unknown_since is not None:
        fields["outcome_unknown_since"] = refund.outcome_unknown_since = None
    # One transaction: the new due time and its audit event stand or fall together (a database error
    # between them would leave a due time no message carries).
    with transaction.atomic():
        Refund.objects.filter(pk=refund.pk).update(**fields)
        if kind:
            event_record(
                refund,
                kind,
                actor=WORKER,
                message=message,
                data={"problems": [str(p) for p in problems or []], "countdown": countdown, "unknown": unknown},
            )
    return ProcessOutcome(status=RefundStatus.PROCESSING, retry_in=countdown, detail=detail, due=due)


def _finish(refund: Refund, failed_error: tuple[RefundErrorCode, str] | None = None) -> ProcessOutcome:
    """Decide the refund's final status from its step rows (docs/architecture.md). Never while a step's
    outcome is unknown: then the refund stays PROCESSING and the step is looked up again (so no
    REFUND_FAILED, or any final event, is announced for money that may have moved)."""
    with transaction.atomic():
        # The refund row locked with its shopper step in one read (the step rows are re-read here:
        # a Stripe event may have settled one since the pass read them).
        current = Refund.objects.select_for_update(of=("self",)).select_related("shopper_refund").get(pk=refund.pk)
        if current.status != RefundStatus.PROCESSING:
            return ProcessOutcome(status=current.status, detail="already final")
        shopper: ShopperRefund | None = getattr(current, "shopper_refund", None)
        reversals = list(TransferReversal.objects.filter(refund=current).select_related("transfer"))
        unknown = [
            StepProblem(reversal_step(r.transfer.recipient), "outcome unknown", unknown=True)
            for r in reversals
            if outcome_unknown(r)
        ]
        if shopper is not None and outcome_unknown(shopper):
            unknown.append(StepProblem(RefundStep.SHOPPER_REFUND, "outcome unknown", unknown=True))
        if not unknown:
            return _finish_known(current, shopper, {r.status for r in reversals}, failed_error)
    return _schedule_lookup(refund, unknown)


def _finish_known(
    current: Refund,
    shopper: ShopperRefund | None,
    reversal_states: set[str],
    failed_error: tuple[RefundErrorCode, str] | None,
) -> ProcessOutcome:
    """`_finish` once every step's outcome is known (inside its transaction, the refund row locked)."""
    if failed_error:
        RefundError.objects.create(refund=current, error_code=failed_error[0], error_message=failed_error[1])
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
    current.outcome_unknown_since = None
    if new_status in (RefundStatus.COMPLETED, RefundStatus.PARTIALLY_COMPLETED):
        current.date_completed = timezone.now()
    current.save(
        update_fields=[
            "status",
            "processing_started_at",
            "next_attempt_at",
            "outcome_unknown_since",
            "date_completed",
            "date_last_modified",
        ]
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


def enqueue_processing(refund_id: int, countdown: float | None = None, due: datetime | None = None) -> None:
    """Hand the refund to a worker (after commit, callers make sure); a broker outage loses nothing.
    `due`: the next_attempt_at the caller just wrote, so this message is not taken for an early
    duplicate whatever the clocks of the machines involved."""
    kwargs = {"due": due.isoformat()} if due else {}
    try:
        if countdown:
            tasks.process_refund.apply_async((refund_id,), kwargs, countdown=countdown)
        else:
            tasks.process_refund.apply_async((refund_id,), kwargs)
    except Exception:  # broker down: the stuck-refund sweep will pick it up from the database
        logger.exception("Could not enqueue refund %s; the sweep will retry it", refund_id)

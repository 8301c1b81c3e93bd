"""What happens to sandbox objects after the call that made them: refunds settling, disputes opening
and closing, and the sweep that applies what fell due.

A refund may carry one scheduled transition (`settles_to` at `settles_at` on the sandbox clock):
pending -> succeeded | failed | canceled, or succeeded -> failed (Stripe documents that a card refund
can fail after it succeeded). It is applied by any read of the refund (retrieve, list) and by
`sweep()`, whichever comes first, exactly once (the rows are locked and re-checked), and announced
with the events Stripe sends. The older `fails_on_next_read` flag (fault `refund_fails_async`) is a
transition to failed due on the next read whatever the clock says.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q

from . import balances, clock, events, objects
from .ids import new_id
from .models import FaultKind, RefundFailureReason, SandboxDispute, SandboxPaymentIntent, SandboxRefund

# Stripe's testing docs: 4000000000005126 (pm_card_refundFail) "the refund succeeds, then fails some
# time later" with expired_or_canceled_card; 4000000000007726 (pm_card_pendingRefund) "the refund is
# pending, then succeeds some time later". "Some time" is this many seconds of the sandbox clock.
TEST_CARD_SETTLE_SECONDS = 30
DEFAULT_FAILURE_REASON = RefundFailureReason.EXPIRED_OR_CANCELED_CARD
# Refund lifecycle faults (faults.BUSINESS): the refund's first status and where it goes.
LIFECYCLE_FAULTS = {
    FaultKind.REFUND_FAILS_ASYNC: ("pending", "failed"),
    FaultKind.REFUND_PENDING: ("pending", "succeeded"),
    FaultKind.REFUND_PENDING_FAILS: ("pending", "failed"),
    FaultKind.REFUND_PENDING_CANCELED: ("pending", "canceled"),
    FaultKind.REFUND_FAILS_LATER: ("succeeded", "failed"),
}
SETTLED_STATUSES = ("succeeded", "failed", "canceled")


@dataclass
class RefundPlan:
    """How a new refund starts and what it becomes."""

    status: str = "succeeded"
    settles_to: str = ""
    settles_at: datetime | None = None
    failure_reason: str = ""
    fails_on_next_read: bool = False
    pending_reason: str = ""


def plan_refund(pi: SandboxPaymentIntent, fault, now: datetime) -> RefundPlan:
    """The lifecycle of a new refund on `pi`: a taken lifecycle fault wins over the card's behaviour."""
    if fault is not None:
        status, settles_to = LIFECYCLE_FAULTS[fault.kind]
        reason = (fault.failure_reason or DEFAULT_FAILURE_REASON) if settles_to == "failed" else ""
        if fault.kind == FaultKind.REFUND_FAILS_ASYNC:
            return RefundPlan(
                status=status, failure_reason=reason, fails_on_next_read=True, pending_reason="processing"
            )
        return RefundPlan(
            status=status,
            settles_to=settles_to,
            settles_at=now + timedelta(seconds=fault.settle_after_seconds),
            failure_reason=reason,
            pending_reason="processing" if status == "pending" else "",
        )
    later = now + timedelta(seconds=TEST_CARD_SETTLE_SECONDS)
    if pi.refunds_pending:
        return RefundPlan(status="pending", settles_to="succeeded", settles_at=later, pending_reason="processing")
    if pi.refunds_fail_later:
        return RefundPlan(settles_to="failed", settles_at=later, failure_reason=DEFAULT_FAILURE_REASON)
    return RefundPlan()


def announce_refund_created(rf: SandboxRefund, pi: SandboxPaymentIntent, previous_refunded: int, request) -> None:
    """refund.created and charge.refunded, as Stripe sends them for every new refund (partial included)."""
    request_id, idempotency_key = request
    events.emit("refund.created", objects.refund(rf, pi), request_id=request_id, idempotency_key=idempotency_key)
    previous: dict = {"amount_refunded": previous_refunded}
    if pi.amount_refunded == pi.amount:  # Stripe lists only the attributes that changed
        previous["refunded"] = False
    events.emit(
        "charge.refunded",
        objects.charge(pi),
        previous_attributes=previous,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


def _due(queryset, now_fn) -> list[int]:
    candidates = list(
        queryset.filter(Q(fails_on_next_read=True) | Q(settles_at__isnull=False)).values_list(
            "pk", "fails_on_next_read", "settles_at"
        )
    )
    if not candidates:
        return []
    now = now_fn()
    return [pk for pk, on_read, at in candidates if on_read or (at is not None and at <= now)]


def settle_due_refunds(queryset=None) -> int:
    """Apply every scheduled transition of `queryset` (default: all refunds) that fell due. Returns the count."""
    queryset = SandboxRefund.objects.all() if queryset is None else queryset
    settled = 0
    for refund_pk in _due(queryset, clock.now):
        with transaction.atomic():
            settled += _settle(refund_pk)
    return settled


def _settle(refund_pk: int) -> int:
    pi_pk = SandboxRefund.objects.filter(pk=refund_pk).values_list("payment_intent_id", flat=True).first()
    if pi_pk is None:
        return 0
    pi = SandboxPaymentIntent.objects.select_for_update().get(pk=pi_pk)  # lock order: charge, refund
    rf = SandboxRefund.objects.select_for_update().get(pk=refund_pk)
    now = clock.now()
    if rf.fails_on_next_read:
        target = "failed"
    elif rf.settles_to and rf.settles_at is not None and rf.settles_at <= now:
        target = rf.settles_to
    else:
        return 0  # another reader settled it first, or it is not due
    reason = rf.settle_failure_reason or DEFAULT_FAILURE_REASON
    rf.fails_on_next_read = False
    rf.settles_to, rf.settles_at, rf.settle_failure_reason = "", None, ""
    if rf.status == target or rf.status in ("failed", "canceled"):
        rf.save(update_fields=["fails_on_next_read", "settles_to", "settles_at", "settle_failure_reason"])
        return 0  # nothing left to change (e.g. a test set the status by hand)
    transition(rf, pi, target, failure_reason=reason, now=now)
    return 1


def transition(rf: SandboxRefund, pi: SandboxPaymentIntent, target: str, *, failure_reason: str, now) -> None:
    """Move a locked refund to `target`, return the money of a failed or canceled one, and announce it."""
    previous: dict[str, str | None] = {"status": rf.status}
    if rf.status == "pending":
        previous["pending_reason"] = rf.pending_reason or None
    rf.status = target
    if target in ("failed", "canceled"):
        if target == "failed":
            previous["failure_reason"] = None
            previous["failure_balance_transaction"] = None
            rf.failure_reason = failure_reason
            # Stripe's failure_balance_transaction reverses the refund's balance transaction.
            rf.failure_balance_transaction = balances.post(
                balances.REFUND_FAILURE, pi.currency, rf.amount, source=rf.stripe_id, at=now
            )
        else:
            balances.adjust(balances.platform_account(), pi.currency, rf.amount)
        pi.amount_refunded -= rf.amount
        pi.save(update_fields=["amount_refunded"])
    rf.save()
    body = objects.refund(rf, pi)
    events.emit("refund.updated", body, previous_attributes=previous)
    events.emit("charge.refund.updated", body, previous_attributes=previous)
    if target == "failed":
        events.emit("refund.failed", body, previous_attributes=previous)


def schedule_refund(refund_id: str, to: str, *, after_seconds: float = 0.0, failure_reason: str = "") -> None:
    """Give an existing refund a transition to `to`, due `after_seconds` from now on the sandbox clock."""
    if to not in SETTLED_STATUSES:
        raise ValueError(f"A refund settles to one of {', '.join(SETTLED_STATUSES)}; got {to!r}.")
    if failure_reason and failure_reason not in RefundFailureReason.values:
        raise ValueError(f"Unknown failure_reason {failure_reason!r}; use one of {', '.join(RefundFailureReason)}.")
    rf = SandboxRefund.objects.get(stripe_id=refund_id)
    allowed = {"pending": SETTLED_STATUSES, "succeeded": ("failed",)}.get(rf.status, ())
    if to not in allowed:
        raise ValueError(f"Stripe does not move a {rf.status} refund to {to}.")
    rf.settles_to = to
    rf.settles_at = clock.now() + timedelta(seconds=after_seconds)
    rf.settle_failure_reason = failure_reason if to == "failed" else ""
    rf.save(update_fields=["settles_to", "settles_at", "settle_failure_reason"])


# --- disputes ---


def open_dispute(pi: SandboxPaymentIntent, *, reason: str = "fraudulent", request=(None, None)) -> SandboxDispute:
    """The cardholder disputes the charge (pi locked by the caller or freshly created): refunds are
    refused from now on, and a pending refund fails with charge_for_pending_refund_disputed."""
    now = clock.now()
    dp = SandboxDispute.objects.create(
        stripe_id=new_id("dp"), payment_intent=pi, amount=pi.amount, currency=pi.currency, reason=reason, created=now
    )
    pi.disputed = True
    pi.save(update_fields=["disputed"])
    pi.refunds.filter(status="pending").update(
        fails_on_next_read=False,
        settles_to="failed",
        settles_at=now,
        settle_failure_reason=RefundFailureReason.CHARGE_FOR_PENDING_REFUND_DISPUTED,
    )
    request_id, idempotency_key = request
    events.emit(
        "charge.dispute.created", objects.dispute(dp, pi), request_id=request_id, idempotency_key=idempotency_key
    )
    return dp


DISPUTE_CLOSED_STATUSES = ("won", "lost", "warning_closed")


def close_dispute(dispute_id: str, status: str = "lost") -> SandboxDispute:
    if status not in DISPUTE_CLOSED_STATUSES:
        raise ValueError(f"A closed dispute is one of {', '.join(DISPUTE_CLOSED_STATUSES)}; got {status!r}.")
    with transaction.atomic():
        dp = SandboxDispute.objects.select_for_update().select_related("payment_intent").get(stripe_id=dispute_id)
        previous = {"status": dp.status}
        dp.status = status
        dp.save(update_fields=["status"])
        events.emit("charge.dispute.closed", objects.dispute(dp), previous_attributes=previous)
    return dp


# --- the sweep ---


@dataclass
class SweepResult:
    refunds_settled: int
    deliveries_retried: int


def sweep() -> SweepResult:
    """Settle every refund whose time came and retry failed webhook deliveries (beat, and tests)."""
    return SweepResult(refunds_settled=settle_due_refunds(), deliveries_retried=events.redeliver_failed())

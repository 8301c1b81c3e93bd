"""The refund engine under real Celery workers: prefork subprocesses on PostgreSQL and Redis,
acks_late + task_reject_on_worker_lost, a 5 s visibility timeout, killed and duplicated messages.

Each test starts its own worker (see workers.py), publishes through the real broker, waits for the
database with a deadline, and ends with the Stripe sandbox as the oracle. Under REQUIRE_SERVICES=1 a
missing PostgreSQL or Redis fails these tests; elsewhere they are skipped with the reason.
"""

import pytest
import redis
from django.utils import timezone

from payments.models import Recipient, ShopperRefund, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import Refund, RefundEvent, RefundStatus
from refunds.tasks import process_refund, sweep_stuck_refunds
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import record
from tests.reliability.oracle import assert_completed_once, error_codes, money_at_stripe, step_rows, transfer_of
from tests.reliability.workers import wait_for
from tests.world import funded_bag

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]

FINAL = (
    RefundStatus.COMPLETED,
    RefundStatus.PARTIALLY_COMPLETED,
    RefundStatus.FAILED,
    RefundStatus.CANCELED,
    RefundStatus.EXTERNAL,
)


def wait_final(refund, worker, timeout=60) -> Refund:
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status in FINAL, timeout, worker)
    refund.refresh_from_db()
    return refund


def task_lines(worker, refund) -> list[str]:
    """The worker's log line for each process_refund run of this refund ('refund N: STATUS ...')."""
    return [line for line in worker.log().splitlines() if f"refund {refund.pk}: " in line]


def test_worker_same_refund_enqueued_five_times_moves_money_once(start_worker):
    """Spec section 2 / matrix rows 18-19: five copies of the same message, two worker processes
    taking them at once (the first copy held up at Stripe for a moment): the advisory-lock claim and
    the status check let exactly one copy move the money; the others do nothing."""
    bag = funded_bag()
    refund = record(bag, enqueue=False, external_id="dup-5").refund
    merchant = transfer_of(bag, Recipient.MERCHANT)
    ledger.inject_fault(
        FaultKind.STALL, path=f"/v1/transfers/{merchant.gateway_transfer_id}/reversals", method="POST", stall_seconds=1
    )
    worker = start_worker()

    for _ in range(5):
        process_refund.delay(refund.pk)

    wait_final(refund, worker)
    wait_for(lambda: len(task_lines(worker, refund)) == 5, 30, worker)  # every copy ran and returned
    stripe = assert_completed_once(refund)
    assert (len(stripe.merchant_reversals), len(stripe.channel_reversals), len(stripe.refunds)) == (1, 1, 1)
    assert ledger.call_count("/v1/refunds", method="POST") == 1
    assert refund.events.filter(kind=RefundEvent.Kind.CLAIMED).count() == 1


@pytest.mark.parametrize("crash_point", ["after_stripe:MERCHANT_REVERSAL", "after_stripe:SHOPPER_REFUND"])
def test_worker_killed_between_stripe_and_database(start_worker, tmp_path, crash_point):
    """Matrix rows 16 and 18: the worker child SIGKILLs itself right after Stripe said yes and before
    the database knew. task_reject_on_worker_lost requeues the message, the prefork pool replaces the
    child, and whichever engine pass comes next finds the Stripe object by metadata: one reversal per
    transfer, one refund, COMPLETED.

    That next pass may be the redelivered message or, since the sandbox delivers Stripe's events,
    the pass the event of the object Stripe just created triggers (refund.created after the shopper
    refund): the dead child's advisory lock went with its connection, so the event's pass can finish
    the refund within milliseconds, seconds before the pool even reports its lost child. So the
    pool's report is waited for, not expected at completion, and the redelivered copy of the killed
    message must then run and move nothing more."""
    marker = tmp_path / "crashed"
    worker = start_worker(VIOLET_CRASH_POINT=crash_point, VIOLET_CRASH_ONCE_FILE=marker)
    bag = funded_bag()

    refund = record(bag, external_id=f"kill-{crash_point}").refund

    wait_final(refund, worker)
    assert marker.exists(), worker.log_tail()  # the child really died at that point
    wait_for(lambda: "WorkerLostError" in worker.log() or "signal 9" in worker.log(), 30, worker)
    # The killed message, redelivered, ran to its end (the killed run logged nothing).
    wait_for(lambda: len(task_lines(worker, refund)) >= 1, 30, worker)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    stripe = assert_completed_once(refund)
    assert (len(stripe.merchant_reversals), len(stripe.channel_reversals), len(stripe.refunds)) == (1, 1, 1)
    assert "found at Stripe after a lost response" in "".join(refund.events.values_list("message", flat=True))


def test_worker_retries_500s_and_429s_then_completes(start_worker):
    """Matrix rows 3-4 with a real broker: 500s on both reversals and 429s on the refund are retried
    by re-enqueued tasks (countdown below the 5 s visibility timeout) until the refund completes once."""
    worker = start_worker()
    bag = funded_bag()
    ledger.inject_fault(FaultKind.HTTP_500, times=2, path="/v1/transfers/*/reversals", method="POST")
    ledger.inject_fault(FaultKind.HTTP_429, times=2, path="/v1/refunds", method="POST")

    refund = record(bag, external_id="transient").refund

    wait_final(refund, worker)
    stripe = assert_completed_once(refund)
    assert len(stripe.refunds) == 1
    assert [c.status_code for c in ledger.calls("/v1/refunds", method="POST")] == [429, 429, 200]
    assert error_codes(refund) == []
    assert refund.events.filter(kind=RefundEvent.Kind.RETRY_SCHEDULED).count() == 3
    wait_for(lambda: len(task_lines(worker, refund)) == 4, 15, worker)  # three retries, then done


def test_worker_permanent_error_ends_failed(start_worker):
    """Matrix row 10 with a real broker: a disputed charge is refused for good: FAILED with a
    RefundError (3007) after one call, no refund at Stripe, no retry.

    Stripe's refusal is the fault, not `ledger.dispute_charge`: in a committing test that emits
    charge.dispute.created, which the worker may apply before the refund's pass (the engine then
    stops before the shopper step and sends nothing), a race this test is not about."""
    worker = start_worker()
    bag = funded_bag()
    ledger.inject_fault(FaultKind.CHARGE_DISPUTED, path="/v1/refunds", method="POST")

    refund = record(bag, external_id="disputed").refund

    wait_final(refund, worker)
    assert refund.status == RefundStatus.FAILED
    assert error_codes(refund) == [RefundErrorCode.CHARGE_DISPUTED]
    assert money_at_stripe(bag).refunds == []
    assert ledger.call_count("/v1/refunds", method="POST") == 1
    shopper, _ = step_rows(refund)
    assert shopper.status == ShopperRefund.Status.FAILED


def test_worker_failed_reversal_with_refunded_shopper_is_partially_completed(start_worker):
    """Matrix row 15 with a real broker: the merchant's connected balance cannot cover its reversal
    while the shopper refund succeeds: PARTIALLY_COMPLETED with BALANCE_INSUFFICIENT (3002)."""
    worker = start_worker()
    bag = funded_bag()
    ledger.set_balance(transfer_of(bag, Recipient.MERCHANT).destination_account_id, 0)

    refund = record(bag, external_id="no-balance").refund

    wait_final(refund, worker)
    assert refund.status == RefundStatus.PARTIALLY_COMPLETED
    assert error_codes(refund) == [RefundErrorCode.BALANCE_INSUFFICIENT]
    _, reversals = step_rows(refund)
    assert reversals[Recipient.MERCHANT].status == TransferReversal.Status.FAILED
    assert reversals[Recipient.DEVELOPER].status == TransferReversal.Status.COMPLETE
    stripe = money_at_stripe(bag)
    assert stripe.merchant_reversals == [] and len(stripe.channel_reversals) == 1
    assert stripe.refunded_sum == refund.amount and len(stripe.refunds) == 1


def test_worker_lost_messages_are_picked_up_by_the_sweep(start_worker, redis_url):
    """Matrix rows 20-21: one refund recorded without a message (enqueue=False), one whose message was
    purged from Redis before any worker saw it. The beat task sweep_stuck_refunds, sent through the
    broker, re-enqueues both; each completes once."""
    never_sent = record(funded_bag(), enqueue=False, external_id="never-sent").refund
    purged = record(funded_bag(), external_id="purged").refund  # published now, no worker yet
    broker = redis.Redis.from_url(redis_url)
    assert broker.llen("refunds") == 1  # its role's queue (CELERY_TASK_ROUTES)
    broker.flushdb()
    old = timezone.now() - timezone.timedelta(seconds=30)
    Refund.objects.filter(pk__in=[never_sent.pk, purged.pk]).update(next_attempt_at=old, date_last_modified=old)
    worker = start_worker()

    sweep_stuck_refunds.delay()

    for refund in (never_sent, purged):
        wait_final(refund, worker)
        stripe = assert_completed_once(refund)
        assert len(stripe.refunds) == 1
        assert refund.events.filter(kind=RefundEvent.Kind.REQUEUED, actor="sweep").count() == 1


def test_worker_warm_shutdown_mid_task(start_worker):
    """Matrix row 23: 'Task completes+acks or is redelivered; never lost, never doubled'. The worker
    gets SIGTERM while a refund is inside its Stripe call (held up 3 s at Stripe): the warm shutdown
    lets the task finish before the process exits; a second worker started afterwards finds nothing
    left to move. One refund, COMPLETED."""
    worker = start_worker()
    bag = funded_bag()
    ledger.inject_fault(FaultKind.STALL, path="/v1/refunds", method="POST", stall_seconds=3)

    refund = record(bag, external_id="warm").refund
    wait_for(lambda: ShopperRefund.objects.filter(refund=refund, attempts__gt=0).exists(), 30, worker)
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.PROCESSING  # still inside the call

    assert worker.terminate(timeout=30) == 0, worker.log_tail()
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert f"refund {refund.pk}: COMPLETED" in worker.log()

    second = start_worker()
    process_refund.delay(refund.pk)  # a copy redelivered after the restart changes nothing
    wait_for(lambda: len(task_lines(second, refund)) == 1, 30, second)
    stripe = assert_completed_once(refund)
    assert len(stripe.refunds) == 1 and ledger.call_count("/v1/refunds", method="POST") == 1

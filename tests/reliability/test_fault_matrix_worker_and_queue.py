"""Fault matrix rows 16-24 (docs/reliability.md, the test matrix): worker crashes and redelivery, visibility timeouts,
the broker down at enqueue, lost messages and the stuck-refund sweep, rollback after enqueue, retries exhausted.

Row 19's claim (test_fault_19b) is in test_fault_matrix_concurrency.py; see matrix.py for the whole map.
"""

import pytest
from django.db import transaction
from django.utils import timezone

from payments.gateway import sent_idempotency_key
from payments.models import Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import Refund, RefundEvent, RefundStatus
from refunds.services import engine, refund_retry, refund_sweep_stuck
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import SimulatedCrash, record
from tests.reliability.matrix import MERCHANT_SHARE, REVERSALS, process, refund_posts
from tests.reliability.oracle import (
    assert_completed_once,
    error_codes,
    event_kinds,
    money_at_stripe,
    step_rows,
    transfer_of,
)
from tests.reliability.workers import LiveBroker
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def test_fault_16_crash_after_stripe_said_yes(bag, crash_at):
    """Row 16: 'Redelivery skips refund (state), does reversal once'. Our order is reversals first, so
    the worker dies right after Stripe reversed the merchant transfer, before the database knew; the
    redelivered task finds the reversal at Stripe (look-up by metadata), records it and does the
    remaining steps once. Then the same after the shopper refund."""
    crash_at("after_stripe:MERCHANT_REVERSAL")
    refund = record(bag, enqueue=False, external_id="r16").refund
    with pytest.raises(SimulatedCrash):
        process(refund)
    _, reversals = step_rows(refund)
    assert reversals[Recipient.MERCHANT].status == TransferReversal.Status.PENDING
    assert len(money_at_stripe(bag).merchant_reversals) == 1

    crash_at("after_stripe:SHOPPER_REFUND")
    with pytest.raises(SimulatedCrash):
        process(refund)
    shopper, _ = step_rows(refund)
    assert shopper.status == ShopperRefund.Status.PENDING and len(money_at_stripe(bag).refunds) == 1

    assert process(refund).status == RefundStatus.COMPLETED
    stripe = assert_completed_once(refund)
    assert (len(stripe.merchant_reversals), len(stripe.channel_reversals), len(stripe.refunds)) == (1, 1, 1)
    merchant_key = sent_idempotency_key(f"refund-{refund.pk}-merchant-reversal")
    assert [
        c.status_code for c in ledger.calls("/v1/transfers/", method="POST") if c.idempotency_key == merchant_key
    ] == [200]
    merchant = transfer_of(bag, Recipient.MERCHANT)
    assert merchant.reversed_amount == MERCHANT_SHARE and merchant.status == Transfer.Status.REVERSED


def test_fault_17_reversal_response_lost(bag, record_and_run):
    """Row 17: '1 refund; amount_reversed and fee refund match expectation'. Adapted: we use separate
    charges and transfers, not destination charges, so the reversal is its own call; its response is
    lost after Stripe reversed the transfer. One reversal exists, Stripe's amount_reversed equals our
    Transfer.reversed_amount, and the refund completes once."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REVERSALS, method="POST")

    refund = record_and_run(bag, external_id="r17")

    stripe = assert_completed_once(refund)
    assert len(stripe.merchant_reversals) == 1
    for recipient in (Recipient.MERCHANT, Recipient.DEVELOPER):
        transfer = transfer_of(bag, recipient)
        assert ledger.transfer(transfer.gateway_transfer_id).amount_reversed == transfer.reversed_amount
        assert transfer.reversed_amount == transfer.amount


def test_fault_18_crash_mid_task_and_poison_cap(bag, crash_at, monkeypatch, settings):
    """Row 18: 'Message redelivered; idempotent => 1 refund; DB attempt cap stops poison loops'. A
    crash after the shopper refund is redelivered and records that refund (no second). A refund
    whose processing dies on every delivery (a poison message) is stopped by the attempt cap: it ends
    FAILED with RETRIES_EXHAUSTED instead of looping forever."""
    crash_at("after_stripe:SHOPPER_REFUND")
    refund = record(bag, enqueue=False, external_id="r18").refund
    with pytest.raises(SimulatedCrash):
        process(refund)
    process_refund.delay(refund.pk)  # the redelivered message
    assert_completed_once(refund)
    assert len(refund_posts()) == 1

    poison = record(funded_bag(), enqueue=False, external_id="r18-poison").refund

    def dies(*args, **kwargs):
        raise SimulatedCrash("worker killed")

    monkeypatch.setattr(engine, "get_gateway", dies)
    deliveries = 0
    for _ in range(settings.REFUND_MAX_ATTEMPTS + 3):
        try:
            process(poison)
        except SimulatedCrash:
            deliveries += 1
            continue
        break
    assert deliveries == settings.REFUND_MAX_ATTEMPTS
    assert poison.status == RefundStatus.FAILED
    assert error_codes(poison) == [RefundErrorCode.RETRIES_EXHAUSTED]
    assert money_at_stripe(poison.bag).refunds == []


def test_fault_19_countdowns_stay_below_visibility_timeout(settings):
    """Row 19: 'Second copy blocked by DB claim (CAS/skip_locked); 1 refund' (the claim is shown by
    test_fault_19b on PostgreSQL and by the real-worker suite); here the other half of the row:
    every retry countdown, and the wait on a pending refund, stays below the broker's visibility
    timeout, so Redis never redelivers a message that is only waiting."""
    settings.CELERY_VISIBILITY_TIMEOUT = 5
    settings.REFUND_RETRY_BACKOFF_BASE_SECONDS = 2
    settings.REFUND_RETRY_BACKOFF_MAX_SECONDS = 600
    for attempt in range(1, 30):
        assert 0 < engine._backoff_seconds(attempt) < settings.CELERY_VISIBILITY_TIMEOUT
    for attempt in range(0, 30):
        assert 0 < engine._pending_recheck_seconds(attempt) < settings.CELERY_VISIBILITY_TIMEOUT
    settings.CELERY_VISIBILITY_TIMEOUT = 3600
    assert engine._backoff_seconds(30) <= 600


def test_fault_20_broker_down_at_enqueue(bag, django_capture_on_commit_callbacks, settings, eager_propagates):
    """Row 20: 'Portal 202; outbox row kept; processed once Redis back'. Adapted: the refund row itself
    is our outbox (PROCESSING with next_attempt_at). Recording with a broker that refuses connections
    still succeeds; the refund waits in PROCESSING; the stuck-refund sweep processes it once when the
    broker is back, and a second sweep finds nothing."""
    # The discard port: nothing listens, every connection is refused.
    with LiveBroker("redis://127.0.0.1:9/0"), django_capture_on_commit_callbacks(execute=True):
        result = record(bag, external_id="r20")
    refund = result.refund
    refund.refresh_from_db()
    assert result.created and refund.status == RefundStatus.PROCESSING
    stripe = money_at_stripe(bag)
    assert stripe.refunds == [] and stripe.merchant_reversals == []  # nothing moved

    settings.REFUND_STUCK_AFTER_SECONDS = 60
    assert refund_sweep_stuck() == []  # too young to be stuck
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now() - timezone.timedelta(minutes=5))
    assert refund_sweep_stuck() == [refund.pk]
    assert_completed_once(refund)
    assert refund_sweep_stuck() == []
    assert len(money_at_stripe(bag).refunds) == 1
    assert "REQUEUED" in event_kinds(refund)


def test_fault_21_message_lost_sweeper_requeues(bag, settings):
    """Row 21: 'Sweeper re-enqueues stale queued rows from Postgres; nothing lost'. A refund whose
    message never reached a worker (recorded without enqueue, as after a wiped queue) and one whose
    retry is scheduled in the future: the sweep re-enqueues only the stale one, which completes once."""
    settings.REFUND_STUCK_AFTER_SECONDS = 60
    lost = record(bag, enqueue=False, external_id="r21").refund
    waiting = record(funded_bag(), enqueue=False, external_id="r21-waiting").refund
    old = timezone.now() - timezone.timedelta(minutes=10)
    Refund.objects.filter(pk=lost.pk).update(next_attempt_at=old, date_last_modified=old)
    Refund.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + timezone.timedelta(seconds=30))

    assert refund_sweep_stuck() == [lost.pk]

    assert_completed_once(lost)
    waiting.refresh_from_db()
    assert waiting.status == RefundStatus.PROCESSING and money_at_stripe(waiting.bag).refunds == []


def test_fault_22_rollback_after_enqueue(bag, django_capture_on_commit_callbacks):
    """Row 22: 'No task runs; no DoesNotExist in worker logs'. The refund is recorded inside a
    transaction that then rolls back: the on-commit enqueue is dropped, no refund row exists and
    Stripe saw no refund or reversal."""
    calls = ledger.call_count()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        record(bag, external_id="r22")
        raise RuntimeError("the surrounding request failed")
    assert callbacks == []
    assert Refund.objects.count() == 0
    assert ledger.call_count() == calls
    assert money_at_stripe(bag).refunds == []


def test_fault_24_retries_exhausted_every_countdown_below_visibility(bag, record_and_run, settings):
    """Row 24: 'Final failed_permanent + alert; every countdown < visibility timeout'. 503s forever:
    after REFUND_MAX_ATTEMPTS attempts the refund is FAILED with RETRIES_EXHAUSTED (the open
    RefundError is the operator's alert); every scheduled countdown was below the visibility timeout;
    no money moved."""
    settings.CELERY_VISIBILITY_TIMEOUT = 5
    ledger.inject_fault(FaultKind.HTTP_503, times=1000, path=REVERSALS, method="POST")

    refund = record_and_run(bag, external_id="r24")

    assert refund.status == RefundStatus.FAILED and refund.attempts == settings.REFUND_MAX_ATTEMPTS
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    countdowns = [
        e.data["countdown"] for e in RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.RETRY_SCHEDULED)
    ]
    assert len(countdowns) == settings.REFUND_MAX_ATTEMPTS - 1
    assert all(0 < c < settings.CELERY_VISIBILITY_TIMEOUT for c in countdowns)
    stripe = money_at_stripe(bag)
    assert stripe.refunds == [] and stripe.merchant_reversals == [] and stripe.channel_reversals == []
    ledger.clear_faults()
    refund_retry(refund=refund)
    process_refund.delay(refund.pk)
    assert_completed_once(refund)

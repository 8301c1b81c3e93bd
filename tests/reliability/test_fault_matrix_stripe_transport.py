"""Fault matrix rows 1-7 (docs/reliability.md, the test matrix): Stripe transport and idempotency.

See matrix.py for how the matrix runs and where its other rows are.
"""

import pytest

from payments.gateway import get_gateway, sent_idempotency_key
from payments.models import ShopperRefund, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import RefundEvent, RefundStatus
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import record
from tests.reliability.matrix import FULL, REFUNDS, REVERSALS, payment_intent_of, process, refund_posts
from tests.reliability.oracle import assert_completed_once, error_codes, event_kinds, money_at_stripe, step_rows

pytestmark = pytest.mark.django_db


def test_fault_01_response_lost_after_refund_created(bag, record_and_run):
    """Row 1: 'Retry reuses stored key => emulator holds 1 refund; local row succeeded with that
    refund id'. The sandbox creates the refund, stores the success under the key, then the client
    sees a connection error; the retry looks the refund up by metadata and records that id."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REFUNDS, method="POST")

    refund = record_and_run(bag, external_id="r1")

    stripe = assert_completed_once(refund)
    assert len(stripe.refunds) == 1 and stripe.refunded_sum == FULL
    shopper, _ = step_rows(refund)
    assert shopper.gateway_refund_id == stripe.refunds[0].stripe_id
    assert len(refund_posts()) == 1  # found by the look-up: no second POST at all
    assert "found at Stripe after a lost response" in "".join(refund.events.values_list("message", flat=True))
    assert (stripe.merchant_balance, stripe.channel_balance) == (0, 0)
    assert error_codes(refund) == []


def test_fault_02_stripe_unreachable_then_recovers(bag):
    """Row 2: 'Backoff retries; no "done" row meanwhile; exactly 1 refund after recovery'. Two
    connection errors on the refund call; between attempts nothing is marked done and Stripe holds
    nothing; the third attempt (same key) refunds once."""
    ledger.inject_fault(FaultKind.CONNECTION_ERROR, times=2, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="r2").refund

    for _ in range(2):
        outcome = process(refund)
        assert outcome.status == RefundStatus.PROCESSING
        assert 0 < outcome.retry_in < 60
        shopper, _ = step_rows(refund)
        assert (shopper.status, shopper.gateway_refund_id) == (ShopperRefund.Status.PENDING, None)
        assert refund.status == RefundStatus.PROCESSING and refund.date_completed is None
        assert money_at_stripe(bag).refunds == []

    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)
    assert {c.idempotency_key for c in refund_posts()} == {sent_idempotency_key(f"refund-{refund.pk}-shopper-refund")}
    assert event_kinds(refund).count("RETRY_SCHEDULED") == 2
    assert error_codes(refund) == []


def test_fault_03_500_past_max_attempts_then_retry_looks_up_first(bag, record_and_run, settings):
    """Row 3: 'Job -> needs_reconcile; reconciler lists refunds by metadata before any new key; never
    2 refunds'. 500s on every attempt, the last one with the effect done at Stripe and the answer lost:
    the budget of calls is spent, but the last call's outcome is unknown, so the refund is never
    failed (issue 13, V1): the next pass lists Stripe's refunds by metadata, finds the one that
    exists, records it and makes no second refund."""
    attempts = settings.REFUND_MAX_ATTEMPTS
    ledger.inject_fault(FaultKind.HTTP_500, times=attempts - 1, path=REFUNDS, method="POST")
    ledger.inject_fault(FaultKind.RESPONSE_LOST, times=1, path=REFUNDS, method="POST")

    refund = record_and_run(bag, external_id="r3")

    assert_completed_once(refund)
    assert error_codes(refund) == []
    assert refund.attempts == attempts
    assert len(refund_posts()) == attempts  # looked up after the lost answer, never called again
    gets = ledger.calls(REFUNDS, method="GET")
    assert gets and gets[-1].pk > refund_posts()[-1].pk
    assert len(money_at_stripe(bag).refunds) == 1
    # A 500 is stored under its key: the engine moved to a new key generation only after a look-up
    # proved nothing was created.
    keys = [c.idempotency_key for c in refund_posts()]
    assert keys[0] == sent_idempotency_key(f"refund-{refund.pk}-shopper-refund") and keys[1].endswith("-g2")


def test_fault_04_rate_limited_then_passes(bag, record_and_run):
    """Row 4: 'Jittered backoff; 1 refund; no alert'. Three 429s on the refund call, then success:
    COMPLETED, one refund, no RefundError, and each retry was scheduled with a countdown."""
    ledger.inject_fault(FaultKind.HTTP_429, times=3, path=REFUNDS, method="POST")

    refund = record_and_run(bag, external_id="r4")

    stripe = assert_completed_once(refund)
    assert len(stripe.refunds) == 1
    assert [c.status_code for c in refund_posts()] == [429, 429, 429, 200]
    assert error_codes(refund) == []
    countdowns = [
        e.data["countdown"] for e in RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.RETRY_SCHEDULED)
    ]
    assert len(countdowns) == 3 and all(0 < c <= 1 for c in countdowns)


def test_fault_05_idempotency_key_in_use(bag, record_and_run):
    """Row 5: 'One refund; loser retries and reads the stored result'. A 409 idempotency_key_in_use
    (a concurrent request held the key) is transient: the engine retries with the same key and
    Stripe holds one refund."""
    ledger.inject_fault(FaultKind.HTTP_409, times=1, path=REFUNDS, method="POST")

    refund = record_and_run(bag, external_id="r5")

    assert_completed_once(refund)
    posts = refund_posts()
    assert [c.status_code for c in posts] == [409, 200]
    assert posts[0].idempotency_key == posts[1].idempotency_key
    assert len(money_at_stripe(bag).refunds) == 1


def test_fault_06_same_key_different_params(bag, caplog):
    """Row 6: 'No new refund; IdempotencyError -> manual review with clear message'. Adapted: our step
    amounts are frozen in the plan and a step is looked up before it is re-sent, so an in-database
    edit cannot reach Stripe under an old key through the engine. We inject the conflict itself: the
    shopper-refund key is already held at Stripe by a request with other parameters (as after a
    database restore that reuses refund ids, or two deployments sharing a prefix). Stripe refuses
    with a 400 idempotency_error (issue 16, item 3): logged as an error to alert on, never recorded as
    the shopper's failure. Stripe executed nothing, but the key's first use may hold an object, so the
    step's outcome is unknown: looked up by metadata before anything is sent again, and re-sent only
    under the same key (which Stripe keeps refusing), so no money can move twice. With the budget
    spent the refund goes to an operator as 'Stripe kept failing', the message naming the conflict."""
    refund = record(bag, enqueue=False, external_id="r6").refund
    pi = payment_intent_of(bag)
    earlier = get_gateway().refund_payment(
        payment_intent_id=pi, amount=100, idempotency_key=f"refund-{refund.pk}-shopper-refund", metadata={}
    )

    assert process(refund).status == RefundStatus.PROCESSING

    shopper, reversals = step_rows(refund)
    assert (shopper.status, shopper.error_code) == (ShopperRefund.Status.PENDING, "unknown:400")
    assert error_codes(refund) == []  # not a failure of the step, nor the shopper's
    alerts = [r for r in caplog.records if r.name == "payments.gateway" and r.levelname == "ERROR"]
    assert alerts and "Stripe idempotency conflict" in alerts[0].getMessage()

    for _ in range(20):
        if process(refund).status != RefundStatus.PROCESSING:
            break
    shopper, reversals = step_rows(refund)
    assert refund.status != RefundStatus.PROCESSING
    assert shopper.status == ShopperRefund.Status.PENDING and shopper.gateway_refund_id is None
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    assert "Stripe kept failing" in refund.errors.get().error_message
    # What the operator reads on the step and in the audit trail: Stripe's own words on the conflict.
    assert "same parameters" in shopper.error_message
    assert any("same parameters" in e.message for e in refund.events.filter(kind=RefundEvent.Kind.STEP_FAILED))
    stripe = money_at_stripe(bag)
    assert [(r.stripe_id, r.amount) for r in stripe.refunds] == [(earlier.id, 100)]  # nothing added
    assert {r.status for r in reversals.values()} == {TransferReversal.Status.COMPLETE}
    posts = refund_posts()
    assert [c.status_code for c in posts[1:]] == [400] * (len(posts) - 1)  # every one refused
    assert {c.idempotency_key for c in posts} == {sent_idempotency_key(f"refund-{refund.pk}-shopper-refund")}
    assert ledger.calls(REFUNDS, method="GET")  # looked up by metadata between sends


def test_fault_07_keys_pruned_then_replayed(bag):
    """Row 7: 'Pre-call lookup finds existing refund => no 2nd refund'. Both a reversal and the refund
    lose their responses; Stripe then prunes every idempotency key (as after 24 h) before each
    replay. The engine looks each step up before calling, so nothing is created twice; replaying the
    completed refund's task after another pruning calls Stripe not at all."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REVERSALS, method="POST")
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="r7").refund

    assert process(refund).status == RefundStatus.PROCESSING  # merchant reversal answer lost
    assert ledger.forget_idempotency_keys() > 0
    assert process(refund).status == RefundStatus.PROCESSING  # reversal found; refund answer lost
    assert ledger.forget_idempotency_keys() > 0
    assert process(refund).status == RefundStatus.COMPLETED  # refund found

    stripe = assert_completed_once(refund)
    assert len(stripe.merchant_reversals) == 1 and len(stripe.channel_reversals) == 1
    assert len(stripe.refunds) == 1
    calls_before = ledger.call_count()
    ledger.forget_idempotency_keys()
    process_refund.delay(refund.pk)  # a late duplicate message
    assert ledger.call_count() == calls_before
    assert_completed_once(refund)

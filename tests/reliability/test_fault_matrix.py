"""The fault & bad-input matrix of spec/reliability.md section 7, rows 1-28, run in-process.

Tasks run eagerly (or the engine is called step by step where a test must look between attempts).
Every test ends with the Stripe sandbox as the oracle: how many refunds and reversals exist, their
sums, the connected balances, and whether our rows (Refund, ShopperRefund, TransferReversal,
RefundError, RefundEvent) say the same. Rows 29-40 (platform webhooks, portal, API input) belong to
other suites. Row 23 (warm shutdown) needs a real worker: see test_real_worker.py, which also runs
rows 3-4, 10, 15, 16, 18-21 against real prefork workers on Redis and PostgreSQL.
"""

import functools
import threading

import pytest
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from payments.gateway import StripeGateway, get_gateway
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import Bag, FinancialStatus, Refund, RefundEvent, RefundStatus
from refunds.services import (
    engine,
    refund_cancel,
    refund_mark_external,
    refund_process,
    refund_retry,
    refund_sweep_stuck,
)
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, SandboxRefund
from stripe_sandbox.transport import sandbox_stripe_client
from tests.parallel import run_in_parallel
from tests.reliability.conftest import SimulatedCrash, record
from tests.reliability.oracle import (
    assert_completed_once,
    error_codes,
    event_kinds,
    money_at_stripe,
    objects_for,
    step_rows,
    transfer_of,
)
from tests.reliability.workers import LiveBroker
from tests.world import funded_bag
from violet_refunds.exceptions import InvalidTransition, ValidationFailed
from violet_refunds.locks import try_exclusive

pytestmark = pytest.mark.django_db

REFUNDS = "/v1/refunds"
REVERSALS = "/v1/transfers/*/reversals"
FULL = 11300  # the `bag` fixture's total
MERCHANT_SHARE = 10300
CHANNEL_SHARE = 1000


def process(refund):
    """One delivery of the refund's task, run inline: the engine's claim, steps and outcome."""
    outcome = refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    return outcome


def refund_posts():
    return ledger.calls(REFUNDS, method="POST")


def payment_intent_of(bag) -> str:
    return PaymentTransaction.objects.get(order_id=bag.order_id).gateway_transaction_id


# --- 1-7: Stripe transport and idempotency --------------------------------------------------------


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
    assert {c.idempotency_key for c in refund_posts()} == {f"refund-{refund.pk}-shopper-refund"}
    assert event_kinds(refund).count("RETRY_SCHEDULED") == 2
    assert error_codes(refund) == []


def test_fault_03_500_past_max_attempts_then_retry_looks_up_first(bag, record_and_run, settings):
    """Row 3: 'Job -> needs_reconcile; reconciler lists refunds by metadata before any new key; never
    2 refunds'. 500s on every attempt, the last one with the effect done at Stripe and the answer lost:
    the refund ends FAILED with RETRIES_EXHAUSTED (our needs-reconcile state). The operator's
    refund_retry lists Stripe's refunds by metadata first, finds the one that exists, records it and
    makes no second refund."""
    attempts = settings.REFUND_MAX_ATTEMPTS
    ledger.inject_fault(FaultKind.HTTP_500, times=attempts - 1, path=REFUNDS, method="POST")
    ledger.inject_fault(FaultKind.RESPONSE_LOST, times=1, path=REFUNDS, method="POST")

    refund = record_and_run(bag, external_id="r3")

    assert refund.status == RefundStatus.FAILED
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    assert refund.attempts == attempts
    stripe = money_at_stripe(bag)
    assert len(stripe.refunds) == 1 and stripe.refunded_sum == FULL  # money moved, we do not know yet
    posts_before = len(refund_posts())
    assert posts_before == attempts

    with transaction.atomic():
        refund_retry(refund=refund, note="after reconcile")
    process_refund.delay(refund.pk)  # what the retry's on_commit enqueues

    assert_completed_once(refund)
    assert len(refund_posts()) == posts_before  # looked up, never called again
    gets = ledger.calls(REFUNDS, method="GET")
    assert gets and gets[-1].pk > refund_posts()[-1].pk
    assert len(money_at_stripe(bag).refunds) == 1
    # A 500 is stored under its key: the engine moved to a new key generation only after a look-up
    # proved nothing was created.
    keys = [c.idempotency_key for c in refund_posts()]
    assert keys[0] == f"refund-{refund.pk}-shopper-refund" and keys[1].endswith("-g2")


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


def test_fault_06_same_key_different_params(bag):
    """Row 6: 'No new refund; IdempotencyError -> manual review with clear message'. Adapted: our step
    amounts are frozen in the plan and a step is looked up before it is re-sent, so an in-database
    edit cannot reach Stripe under an old key through the engine. We inject the conflict itself: the
    shopper-refund key is already held at Stripe by a request with other parameters (as after a
    database restore that reuses refund ids). Stripe refuses; the step fails for review, no refund
    is added."""
    refund = record(bag, enqueue=False, external_id="r6").refund
    pi = payment_intent_of(bag)
    earlier = get_gateway().refund_payment(
        payment_intent_id=pi, amount=100, idempotency_key=f"refund-{refund.pk}-shopper-refund", metadata={}
    )

    assert process(refund).status == RefundStatus.FAILED

    shopper, reversals = step_rows(refund)
    assert shopper.status == ShopperRefund.Status.FAILED and shopper.gateway_refund_id is None
    assert error_codes(refund) == [RefundErrorCode.IDEMPOTENCY_CONFLICT]
    message = refund.errors.get().error_message
    assert "idempotent" in message.lower() or "idempotency" in message.lower()
    stripe = money_at_stripe(bag)
    assert [(r.stripe_id, r.amount) for r in stripe.refunds] == [(earlier.id, 100)]  # nothing added
    assert {r.status for r in reversals.values()} == {TransferReversal.Status.COMPLETE}
    assert len(refund_posts()) == 2  # the earlier request and our single refused one


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


# --- 8-15: Stripe business refusals ---------------------------------------------------------------


def test_fault_08_charge_already_refunded_out_of_band(bag, record_and_run):
    """Row 8: 'Terminal, not retried; local state synced from charge; portal shows reason, no 500'.
    The shopper was refunded in the Stripe dashboard. Our refund's shopper step gets
    charge_already_refunded once, is not retried, and the refund is FAILED with code 3001 and Stripe's
    reason; the operator marks it EXTERNAL and the bag becomes REFUNDED (our equivalent of syncing)."""
    pi = payment_intent_of(bag)
    get_gateway().refund_payment(payment_intent_id=pi, amount=FULL, idempotency_key="dashboard-1", metadata={})

    refund = record_and_run(bag, external_id="r8")

    assert refund.status == RefundStatus.FAILED
    assert error_codes(refund) == [RefundErrorCode.CHARGE_ALREADY_REFUNDED]
    assert "already been refunded" in refund.errors.get().error_message
    assert len(refund_posts()) == 2  # the dashboard's and ours, once
    stripe = money_at_stripe(bag)
    assert len(stripe.refunds) == 1 and objects_for(stripe.refunds, refund) == []
    assert (len(stripe.merchant_reversals), len(stripe.channel_reversals)) == (1, 1)

    refund_mark_external(refund=refund, note="Refunded from the Stripe dashboard")
    refund.refresh_from_db()
    bag.refresh_from_db()
    assert refund.status == RefundStatus.EXTERNAL
    assert bag.financial_status == FinancialStatus.REFUNDED


def test_fault_09_amount_over_unrefunded_remainder(bag, record_and_run):
    """Row 9: 'Rejected before or at Stripe (InvalidRequestError); no retry loop'. Before: recording
    more than the bag has left is a validation error and no call. At Stripe: after $50 was refunded
    out of band, a full refund gets amount_too_large once and ends FAILED (code 3003)."""
    with pytest.raises(ValidationFailed) as invalid:
        record(bag, enqueue=False, amount=FULL + 1)
    assert "amount" in invalid.value.field_errors
    assert Refund.objects.count() == 0 and refund_posts() == []

    pi = payment_intent_of(bag)
    get_gateway().refund_payment(payment_intent_id=pi, amount=5000, idempotency_key="dashboard-2", metadata={})
    refund = record_and_run(bag, external_id="r9")

    assert refund.status == RefundStatus.FAILED
    assert error_codes(refund) == [RefundErrorCode.AMOUNT_TOO_LARGE]
    assert len(refund_posts()) == 2
    stripe = money_at_stripe(bag)
    assert stripe.refunded_sum == 5000 and stripe.charge_refunded == 5000


def test_fault_10_charge_disputed(bag, record_and_run):
    """Row 10: 'Terminal blocked_disputed; operator alert'. The shopper disputed the charge: the refund
    call is refused with charge_disputed, the refund is FAILED with code 3007 (the operator's alert is
    the open RefundError on the Failed refunds screen), no refund exists at Stripe."""
    ledger.dispute_charge(payment_intent_of(bag))

    refund = record_and_run(bag, external_id="r10")

    assert refund.status == RefundStatus.FAILED
    error = refund.errors.get()
    assert (error.error_code, error.gateway_code, error.step) == (
        RefundErrorCode.CHARGE_DISPUTED,
        "charge_disputed",
        "SHOPPER_REFUND",
    )
    assert money_at_stripe(bag).refunds == []
    assert len(refund_posts()) == 1


def test_fault_11_refund_fails_asynchronously(bag, settings):
    """Row 11: 'Local pending -> failed via webhook; never shown as succeeded; merchant alerted'.
    Adapted: we do not consume Stripe's refund webhooks; the engine re-checks a pending refund
    (retrieve) on its next attempt. Stripe accepts the refund as pending, later fails it: locally it
    is PENDING (never SUCCEEDED), then FAILED with code 3006. refund_retry sends a new key generation
    (the failed refund moved no money) and the refund completes with exactly one succeeded refund."""
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="r11").refund

    outcome = process(refund)
    assert outcome.status == RefundStatus.PROCESSING and outcome.retry_in > 0
    shopper, _ = step_rows(refund)
    assert shopper.status == ShopperRefund.Status.PENDING and shopper.gateway_refund_id
    assert refund.status == RefundStatus.PROCESSING and refund.attempts == 0  # waiting is no attempt

    assert process(refund).status == RefundStatus.FAILED
    shopper.refresh_from_db()
    assert (shopper.status, shopper.failure_reason) == (ShopperRefund.Status.FAILED, "expired_or_canceled_card")
    assert error_codes(refund) == [RefundErrorCode.SHOPPER_REFUND_FAILED]
    stripe = money_at_stripe(bag)
    assert [r.status for r in stripe.refunds] == ["failed"] and stripe.charge_refunded == 0

    refund_retry(refund=refund, note="card replaced")
    # The new call hits a rate limit first: the retry's look-up must not mistake the old failed
    # refund (same metadata) for this generation's outcome.
    ledger.inject_fault(FaultKind.HTTP_429, path=REFUNDS, method="POST")
    assert process(refund).status == RefundStatus.PROCESSING
    assert process(refund).status == RefundStatus.COMPLETED
    stripe = money_at_stripe(bag)
    assert [r.status for r in stripe.refunds] == ["failed", "succeeded"]
    assert stripe.refunded_sum == FULL and stripe.charge_refunded == FULL
    shopper.refresh_from_db()
    assert shopper.gateway_refund_id == stripe.refunds[1].stripe_id
    assert (len(stripe.merchant_reversals), len(stripe.channel_reversals)) == (1, 1)


def test_fault_12_refund_pending_is_never_reissued(bag):
    """Row 12: 'Stays pending; no re-issue; resolves on later event'. Stripe holds the refund as
    pending (insufficient platform funds): each attempt only re-reads it, never POSTs again, and the
    refund stays PROCESSING until Stripe says succeeded, then COMPLETED."""
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC, path=REFUNDS, method="POST")
    refund = record(bag, enqueue=False, external_id="r12").refund
    assert process(refund).status == RefundStatus.PROCESSING
    # Stripe keeps it pending (insufficient_funds) rather than failing it.
    SandboxRefund.objects.update(fails_on_next_read=False)

    for _ in range(3):
        outcome = process(refund)
        assert outcome.status == RefundStatus.PROCESSING and outcome.detail == "pending at Stripe"
    assert len(refund_posts()) == 1
    assert len(ledger.calls("/v1/refunds/re_", method="GET")) == 3

    SandboxRefund.objects.update(status="succeeded")
    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)
    assert len(refund_posts()) == 1


def test_fault_13_bad_api_key(bag, monkeypatch):
    """Row 13: 'AuthenticationError terminal for that app only; secret absent from logs; other apps
    proceed'. Adapted: one Stripe key serves the platform, so the scope is 'this process's gateway'.
    With a rejected key every step fails at once with code 3008 (no retry loop) and the key never
    appears in errors or events; with the right key another refund completes."""
    bad_key = "sk_live_51Hrotatedkey0000000000000000secretTAIL"
    bad_gateway = StripeGateway(sandbox_stripe_client(bad_key))
    monkeypatch.setattr(engine, "get_gateway", lambda: bad_gateway)
    refund = record(bag, enqueue=False, external_id="r13").refund

    assert process(refund).status == RefundStatus.FAILED
    assert set(error_codes(refund)) == {RefundErrorCode.GATEWAY_AUTHENTICATION}
    texts = list(refund.errors.values_list("error_message", flat=True)) + list(
        refund.events.values_list("message", flat=True)
    )
    assert texts and not any(bad_key in t or "rotatedkey" in t for t in texts)
    assert money_at_stripe(bag).refunds == []
    assert ledger.call_count(REFUNDS, method="POST") == 1  # tried once, not in a loop

    monkeypatch.setattr(engine, "get_gateway", get_gateway)
    other = record(funded_bag(), enqueue=False, external_id="r13-other").refund
    assert process(other).status == RefundStatus.COMPLETED
    assert_completed_once(other)


def test_fault_14_reversal_over_transfer_remainder(bag, record_and_run):
    """Row 14: 'Local cap check; on Stripe error, terminal; sum of reversals <= transfer'. Someone
    reversed most of the merchant transfer outside the engine; our merchant reversal exceeds what is
    left, Stripe refuses (amount_too_large), the step fails for good while the channel reversal and
    the shopper refund go through: PARTIALLY_COMPLETED, and the transfer is never over-reversed."""
    merchant = transfer_of(bag, Recipient.MERCHANT)
    get_gateway().reverse_transfer(
        transfer_id=merchant.gateway_transfer_id, amount=MERCHANT_SHARE - 100, idempotency_key="ops-1", metadata={}
    )

    refund = record_and_run(bag, external_id="r14")

    assert refund.status == RefundStatus.PARTIALLY_COMPLETED
    assert error_codes(refund) == [RefundErrorCode.AMOUNT_TOO_LARGE]
    _, reversals = step_rows(refund)
    assert reversals[Recipient.MERCHANT].status == TransferReversal.Status.FAILED
    assert reversals[Recipient.DEVELOPER].status == TransferReversal.Status.COMPLETE
    stripe = money_at_stripe(bag)
    assert stripe.merchant_reversed == MERCHANT_SHARE - 100 <= merchant.amount
    assert stripe.channel_reversed == CHANNEL_SHARE
    assert stripe.refunded_sum == FULL
    merchant.refresh_from_db()
    assert merchant.reversed_amount == 0  # ours reversed nothing of it


def test_fault_15_connected_balance_too_low_then_retry(bag, record_and_run):
    """Row 15: 'Refund state independent; reversal failed_retryable, retried later; exactly 1 reversal
    eventually'. The merchant's connected balance is 0: its reversal fails (balance_insufficient) while
    the shopper is refunded: PARTIALLY_COMPLETED with code 3002. Once the balance is back, refund_retry
    reverses it once (new key generation, since Stripe stored the refusal) and the refund completes."""
    merchant = transfer_of(bag, Recipient.MERCHANT)
    ledger.set_balance(merchant.destination_account_id, 0)

    refund = record_and_run(bag, external_id="r15")

    assert refund.status == RefundStatus.PARTIALLY_COMPLETED
    assert error_codes(refund) == [RefundErrorCode.BALANCE_INSUFFICIENT]
    stripe = money_at_stripe(bag)
    assert stripe.merchant_reversals == [] and stripe.channel_reversed == CHANNEL_SHARE
    assert stripe.refunded_sum == FULL
    bag.refresh_from_db()
    assert bag.financial_status == FinancialStatus.REFUNDED  # the shopper has the money

    ledger.set_balance(merchant.destination_account_id, MERCHANT_SHARE)
    refund_retry(refund=refund, note="merchant topped up")
    process_refund.delay(refund.pk)

    stripe = assert_completed_once(refund)
    assert len(stripe.merchant_reversals) == 1 and stripe.merchant_reversed == MERCHANT_SHARE
    assert len(stripe.refunds) == 1
    assert stripe.merchant_balance == 0
    _, reversals = step_rows(refund)
    assert reversals[Recipient.MERCHANT].idempotency_key.endswith("-g2")


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
    merchant_key = f"refund-{refund.pk}-merchant-reversal"
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


def _hold_refund_lock(refund_id: int):
    """Hold the refund's advisory lock from another database session (another worker)."""
    taken, release = threading.Event(), threading.Event()

    def holder():
        try:
            with try_exclusive("refund", refund_id) as acquired:
                assert acquired
                taken.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(timeout=10)
    return release, thread


@pytest.mark.postgres
def test_fault_19b_second_copy_blocked_by_claim(bag):
    """Row 19: 'Second copy blocked by DB claim (CAS/skip_locked); 1 refund'. While one worker holds
    the refund (its advisory lock), a second copy of the message makes no Stripe call and changes
    nothing; once the first is done, processing moves the money once."""
    refund = record(bag, enqueue=False, external_id="r19").refund
    release, thread = _hold_refund_lock(refund.pk)
    try:
        calls = ledger.call_count()
        assert process(refund).status == "LOCKED"
        assert ledger.call_count() == calls and refund.attempts == 0
    finally:
        release.set()
        thread.join(timeout=10)
    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)


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


def test_fault_25_double_submit(bag, record_and_run):
    """Row 25: 'Unique refund-intent constraint => 1 intent; 2nd response returns the existing one'.
    The same external id, and the same client request key, submitted twice: one refund each, the
    second call returns the first, and Stripe refunds once per refund."""
    first = record_and_run(bag, amount=3000, external_id="shopify-77")
    again = record(bag, amount=3000, external_id="shopify-77")
    assert not again.created and again.refund.pk == first.pk

    by_key = record_and_run(bag, amount=2000, request_key="click-1")
    repeat = record(bag, amount=2000, request_key="click-1")
    assert not repeat.created and repeat.refund.pk == by_key.pk

    assert Refund.objects.filter(bag=bag).count() == 2
    assert_completed_once(first)
    assert_completed_once(by_key)
    stripe = money_at_stripe(bag)
    assert sorted(r.amount for r in stripe.refunds) == [2000, 3000]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fault_25b_concurrent_double_submit(eager_propagates):
    """Row 25 (concurrent): two requests with the same request key at the same moment, each in its
    own database session: one refund is recorded, both callers get it, Stripe refunds once."""
    bag = funded_bag()

    def submit():
        return record(Bag.objects.get(pk=bag.pk), amount=4000, request_key="double-click")

    results = run_in_parallel(submit, submit)  # fails the test if either raised

    assert sorted(r.created for r in results) == [False, True]
    assert results[0].refund.pk == results[1].refund.pk
    refund = Refund.objects.get(bag=bag)
    assert_completed_once(refund)
    assert [r.amount for r in money_at_stripe(bag).refunds] == [4000]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fault_26_db_connection_killed_after_stripe_ok(monkeypatch, settings, eager_propagates):
    """Row 26: 'Retry replays same key => same refund id recorded; no 2nd refund'. Right after Stripe
    refunded the shopper, the worker's own PostgreSQL session is terminated (pg_terminate_backend):
    the task dies with a database error and its advisory lock goes with the session. The stuck-refund
    sweep takes it up again; the look-up finds the refund Stripe made and records that id: one refund."""
    bag = funded_bag()
    refund = record(bag, enqueue=False, external_id="r26").refund
    killed = []

    def kill_own_session(point: str) -> None:
        if point == "after_stripe:SHOPPER_REFUND" and not killed:
            killed.append(point)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr("refunds.services.steps.crash_point", kill_own_session)
    with pytest.raises((OperationalError, InterfaceError)):
        process_refund.delay(refund.pk)
    connection.close()  # what the worker's next task does: a fresh session
    assert killed
    shopper, _ = step_rows(refund)
    assert (shopper.status, shopper.gateway_refund_id) == (ShopperRefund.Status.PENDING, None)
    stripe_refund = money_at_stripe(bag).refunds[0]

    settings.REFUND_STUCK_AFTER_SECONDS = 60
    old = timezone.now() - timezone.timedelta(minutes=5)
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=old)
    assert refund_sweep_stuck() == [refund.pk]

    assert_completed_once(refund)
    shopper.refresh_from_db()
    assert shopper.gateway_refund_id == stripe_refund.stripe_id
    assert len(money_at_stripe(bag).refunds) == 1 and len(refund_posts()) == 1


@pytest.mark.postgres
def test_fault_27_refund_locked_elsewhere(bag):
    """Row 27: '`nowait` => task retries later; portal gets 409 text, not 500'. While a worker holds
    the refund, an operator's retry / cancel / mark-external is refused with InvalidTransition (an
    HTTP 409 with a message), and a second task copy does nothing; afterwards processing completes."""
    refund = record(bag, enqueue=False, external_id="r27").refund
    release, thread = _hold_refund_lock(refund.pk)
    try:
        for action in (
            lambda: refund_retry(refund=refund),
            lambda: refund_cancel(refund=refund),
            lambda: refund_mark_external(refund=refund, note="paid by cheque"),
        ):
            with pytest.raises(InvalidTransition) as refused:
                action()
            assert refused.value.status_code == 409 and "being processed" in refused.value.message
        assert process(refund).status == "LOCKED"
    finally:
        release.set()
        thread.join(timeout=10)
    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fault_28_concurrent_writers_on_one_bag(eager_propagates):
    """Row 28: 'Fixed lock order or tx retry; final state correct'. Three sessions at once each record
    and process partial refunds of the same bag (bag row, refund rows, transfers and the sandbox's
    charge and balances all locked along the way): no deadlock or error, every refund completes,
    and the sums at Stripe are exact."""
    bag = funded_bag()
    amounts = [[1000, 1500], [2000, 700], [1200, 300]]

    def writer(index):
        for n, amount in enumerate(amounts[index]):
            record(Bag.objects.get(pk=bag.pk), amount=amount, external_id=f"w{index}-{n}")

    # No error in any writer (run_in_parallel fails the test with their tracebacks otherwise).
    run_in_parallel(*(functools.partial(writer, i) for i in range(len(amounts))), join_timeout=90)
    refunds = list(Refund.objects.filter(bag=bag))
    assert len(refunds) == 6
    for refund in refunds:
        assert_completed_once(refund)
    stripe = money_at_stripe(bag)
    total = sum(sum(a) for a in amounts)
    assert stripe.refunded_sum == total == stripe.charge_refunded
    merchant, channel = transfer_of(bag, Recipient.MERCHANT), transfer_of(bag, Recipient.DEVELOPER)
    assert stripe.merchant_reversed == merchant.reversed_amount and stripe.channel_reversed == channel.reversed_amount
    assert stripe.merchant_reversed + stripe.channel_reversed == total


# --- sequences and operator repairs ---------------------------------------------------------------


def test_partial_refunds_end_in_exact_full_reversal(record_and_run):
    """Partial refunds in sequence (odd amounts, so rounding matters) then a refund of what is left:
    each transfer ends exactly fully reversed at Stripe, the shopper got the whole charge back, both
    connected balances are 0, and the local reversed amounts agree with Stripe's."""
    bag = funded_bag(skus=((3333, 3),), shipping=777, tax=1234, commission_rate="12.50")
    refunds = [record_and_run(bag, amount=amount) for amount in (1001, 2999, 17, 4321)]
    refunds.append(record_and_run(bag))  # everything left

    for refund in refunds:
        assert_completed_once(refund)
    stripe = money_at_stripe(bag)
    merchant, channel = transfer_of(bag, Recipient.MERCHANT), transfer_of(bag, Recipient.DEVELOPER)
    assert stripe.refunded_sum == stripe.charge_amount == bag.total
    assert stripe.merchant_reversed == merchant.amount and stripe.channel_reversed == channel.amount
    assert (stripe.merchant_balance, stripe.channel_balance) == (0, 0)
    assert (merchant.reversed_amount, channel.reversed_amount) == (merchant.amount, channel.amount)
    bag.refresh_from_db()
    assert bag.financial_status == FinancialStatus.REFUNDED


def test_cancel_refused_when_stripe_may_have_moved_money(bag, record_and_run, settings):
    """CANCELED means 'an operator stopped it before money moved' (design section 4). Here the
    reversals kept failing with 500s and the last merchant reversal's answer was lost after Stripe
    made it: the refund is FAILED with RETRIES_EXHAUSTED and no step is recorded as done, yet Stripe
    reversed the merchant's money. Cancelling would free the amount for a second refund (a second
    reversal); the cancel looks the unanswered steps up first and refuses. A retry records it."""
    tries = settings.REFUND_MAX_ATTEMPTS
    ledger.inject_fault(FaultKind.HTTP_500, times=2 * (tries - 1), path=REVERSALS, method="POST")
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REVERSALS, method="POST")  # merchant, last try
    ledger.inject_fault(FaultKind.HTTP_500, path=REVERSALS, method="POST")  # channel, last try
    refund = record_and_run(bag, amount=3000, external_id="r-cancel")
    assert refund.status == RefundStatus.FAILED
    assert error_codes(refund) == [RefundErrorCode.RETRIES_EXHAUSTED]
    _, reversals = step_rows(refund)
    assert {r.status for r in reversals.values()} == {TransferReversal.Status.PENDING}
    assert len(money_at_stripe(bag).merchant_reversals) == 1  # Stripe did it

    with pytest.raises(InvalidTransition) as refused:
        refund_cancel(refund=refund, note="give up")
    assert "Stripe already holds trr_" in refused.value.message
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED

    refund_retry(refund=refund)
    process_refund.delay(refund.pk)
    stripe = assert_completed_once(refund)
    assert len(stripe.merchant_reversals) == 1 and len(stripe.refunds) == 1


def test_cancel_allowed_when_nothing_reached_stripe(bag, record_and_run, settings):
    """The other side of the cancel check: a refund that failed before any step reached Stripe can be
    canceled, and its amount becomes refundable again."""
    ledger.inject_fault(FaultKind.HTTP_503, times=1000, path=REVERSALS, method="POST")
    refund = record_and_run(bag, external_id="r-cancel-ok")
    assert refund.status == RefundStatus.FAILED
    ledger.clear_faults()

    canceled = refund_cancel(refund=refund, note="shopper changed their mind")

    assert canceled.status == RefundStatus.CANCELED
    stripe = money_at_stripe(bag)
    assert stripe.refunds == [] and stripe.merchant_reversals == [] and stripe.channel_reversals == []
    again = record_and_run(bag, external_id="r-cancel-ok-2")
    assert_completed_once(again)

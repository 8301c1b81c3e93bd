"""Fault matrix rows 8-15 (docs/reliability.md, the test matrix): Stripe business refusals.

See matrix.py for how the matrix runs and where its other rows are.
"""

import pytest

from payments.gateway import StripeGateway, get_gateway
from payments.models import Recipient, ShopperRefund, TransferReversal
from refunds.errors import RefundErrorCode
from refunds.models import FinancialStatus, Refund, RefundStatus
from refunds.services import engine, refund_mark_external, refund_retry
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, SandboxRefund
from stripe_sandbox.transport import sandbox_stripe_client
from tests.reliability.conftest import record
from tests.reliability.matrix import (
    CHANNEL_SHARE,
    FULL,
    MERCHANT_SHARE,
    REFUNDS,
    payment_intent_of,
    process,
    refund_posts,
)
from tests.reliability.oracle import (
    assert_completed_once,
    error_codes,
    money_at_stripe,
    objects_for,
    step_rows,
    transfer_of,
)
from tests.world import funded_bag
from violet_refunds.exceptions import ValidationFailed

pytestmark = pytest.mark.django_db


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
    assert refund.status == RefundStatus.PROCESSING and refund.attempts == 1  # one pass sent calls; waiting adds none

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

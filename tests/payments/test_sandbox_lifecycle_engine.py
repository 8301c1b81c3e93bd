"""The refund engine through the sandbox's refund lifecycle: a shopper refund Stripe holds as pending
completes when Stripe settles it, fails with Stripe's failure_reason for an operator, or is canceled."""

import pytest

from payments.models import ShopperRefund
from refunds.errors import RefundErrorCode
from refunds.models import RefundStatus
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import record
from tests.reliability.matrix import REFUNDS, process, refund_posts
from tests.reliability.oracle import assert_completed_once, error_codes, money_at_stripe, step_rows
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def pending_refund(kind: str, **fault):
    ledger.inject_fault(kind, path=REFUNDS, method="POST", settle_after_seconds=600, **fault)
    refund = record(funded_bag(), enqueue=False, external_id=f"lifecycle-{kind}").refund
    outcome = process(refund)
    shopper, _ = step_rows(refund)
    assert outcome.status == RefundStatus.PROCESSING and outcome.detail == "pending at Stripe"
    assert shopper.status == ShopperRefund.Status.PENDING
    assert process(refund).status == RefundStatus.PROCESSING  # not due yet: still pending at Stripe
    ledger.advance_clock(600)
    return refund


def test_pending_shopper_refund_that_succeeds_later_completes():
    refund = pending_refund(FaultKind.REFUND_PENDING)

    assert process(refund).status == RefundStatus.COMPLETED
    assert_completed_once(refund)
    assert len(refund_posts()) == 1


def test_pending_shopper_refund_that_fails_later_reaches_an_operator_with_the_reason():
    refund = pending_refund(FaultKind.REFUND_PENDING_FAILS, failure_reason="insufficient_funds")

    assert process(refund).status == RefundStatus.FAILED
    shopper, _ = step_rows(refund)
    assert (shopper.status, shopper.failure_reason) == (ShopperRefund.Status.FAILED, "insufficient_funds")
    assert error_codes(refund) == [RefundErrorCode.SHOPPER_REFUND_FAILED]
    assert refund.errors.get().gateway_code == "insufficient_funds"
    stripe = money_at_stripe(refund.bag)
    assert [r.status for r in stripe.refunds] == ["failed"] and stripe.charge_refunded == 0


def test_pending_shopper_refund_canceled_at_stripe_fails_with_nothing_refunded():
    refund = pending_refund(FaultKind.REFUND_PENDING_CANCELED)

    assert process(refund).status == RefundStatus.FAILED
    shopper, _ = step_rows(refund)
    assert shopper.status == ShopperRefund.Status.FAILED
    assert "canceled" in refund.errors.get().error_message
    stripe = money_at_stripe(refund.bag)
    assert [r.status for r in stripe.refunds] == ["canceled"] and stripe.charge_refunded == 0

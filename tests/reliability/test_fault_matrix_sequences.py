"""Beyond the fault matrix's rows: partial refunds in sequence, and the operator's cancel around Stripe's state.

See matrix.py for how the matrix runs.
"""

import pytest

from payments.models import Recipient, TransferReversal
from refunds.models import FinancialStatus, RefundStatus
from refunds.services import refund_cancel, refund_process
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.reliability.conftest import record
from tests.reliability.matrix import REVERSALS
from tests.reliability.oracle import assert_completed_once, money_at_stripe, step_rows, transfer_of
from tests.world import funded_bag
from violet_refunds.exceptions import InvalidTransition

pytestmark = pytest.mark.django_db


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


def test_cancel_refused_when_stripe_may_have_moved_money(bag):
    """CANCELED means 'an operator stopped it before money moved' (docs/architecture.md). Here the
    merchant reversal's answer was lost after Stripe made it: the refund is still PROCESSING (an
    unknown outcome is never final) and no step is recorded as done, yet Stripe reversed the
    merchant's money. Cancelling would free the amount for a second refund (a second reversal); the
    cancel looks the unanswered steps up first and refuses. The next pass records it."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path=REVERSALS, method="POST")  # merchant, first try
    refund = record(bag, enqueue=False, amount=3000, external_id="r-cancel").refund
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PROCESSING
    _, reversals = step_rows(refund)
    assert reversals[Recipient.MERCHANT].status == TransferReversal.Status.PENDING
    assert len(money_at_stripe(bag).merchant_reversals) == 1  # Stripe did it

    with pytest.raises(InvalidTransition) as refused:
        refund_cancel(refund=refund, note="give up")
    assert "Stripe already holds trr_" in refused.value.message
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PROCESSING

    refund_process(refund_id=refund.pk)
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

"""refunds.reconciliation without the command: it matches Stripe objects to steps with the engine's
own matching (refunds.services.steps), and reports what it compared."""

import pytest

from payments.gateway import get_gateway
from payments.models import PaymentTransaction
from refunds.models import RefundSource, RefundStep
from refunds.reconciliation import RefundsUnknown, refunds_reconcile
from refunds.services import refund_process, refund_record
from refunds.services.steps import is_step_object, step_metadata, step_objects, stripe_object_refund_id
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def processed_refund():
    bag = funded_bag()
    refund = refund_record(bag=bag, source=RefundSource.CHANNEL_API, actor="test", enqueue=False).refund
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    return refund


def test_a_processed_refund_matches_stripe():
    refund = processed_refund()
    report = refunds_reconcile(refund_ids=[refund.pk])
    assert report.differences == []
    assert (report.scope, report.payments, report.transfers) == (f"refunds {refund.pk}", 1, 2)


def test_unknown_ids_are_named():
    with pytest.raises(RefundsUnknown) as caught:
        refunds_reconcile(refund_ids=[424242, 424243])
    assert caught.value.ids == [424242, 424243]


def test_the_engine_matching_is_what_ties_a_stripe_object_to_a_step():
    refund = processed_refund()
    pi = PaymentTransaction.objects.get(order_id=refund.bag.order_id).gateway_transaction_id
    at_stripe = get_gateway().list_refunds(payment_intent_id=pi)
    (mine,) = step_objects(at_stripe, refund, RefundStep.SHOPPER_REFUND)
    assert mine.metadata == step_metadata(refund, RefundStep.SHOPPER_REFUND)
    assert stripe_object_refund_id(mine) == refund.pk
    assert not is_step_object(mine, refund, RefundStep.MERCHANT_REVERSAL)

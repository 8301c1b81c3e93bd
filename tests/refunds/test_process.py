"""refund_process and the operator repairs, through the real gateway and the Stripe sandbox."""

import pytest
from django.utils import timezone

from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds.models import BagStatus, FinancialStatus, OrderSku, Refund, RefundEvent, RefundSource, RefundStatus
from refunds.services import (
    RefundSkuLine,
    refund_cancel,
    refund_error_resolve,
    refund_mark_external,
    refund_process,
    refund_record,
    refund_retry,
    refund_sweep_stuck,
)
from stripe_sandbox import ledger
from tests.factories import OperatorFactory
from tests.world import funded_bag
from violet_refunds.exceptions import InvalidTransition, ValidationFailed

pytestmark = pytest.mark.django_db


def record(bag, **kwargs):
    kwargs.setdefault("source", RefundSource.PLATFORM_WEBHOOK)
    kwargs.setdefault("actor", "test")
    return refund_record(bag=bag, enqueue=False, **kwargs).refund


def transfers(bag):
    return {t.recipient: t for t in Transfer.objects.filter(bag=bag)}


def test_full_refund_reverses_both_transfers_and_refunds_the_shopper():
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, commission_rate="10.00")
    legs = transfers(bag)
    assert (legs[Recipient.MERCHANT].amount, legs[Recipient.DEVELOPER].amount) == (10300, 1000)
    refund = record(bag)
    outcome = refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert outcome.status == refund.status == RefundStatus.COMPLETED
    assert refund.merchant_transfer_reversal_amount_usd == 10300
    assert refund.developer_transfer_reversal_amount_usd == 1000
    assert refund.platform_currency == "USD"
    payment = PaymentTransaction.objects.get(order=bag.order)
    assert [r.amount for r in ledger.refunds_for(payment.gateway_transaction_id)] == [11300]
    assert [r.amount for r in ledger.reversals_for(legs[Recipient.MERCHANT].gateway_transfer_id)] == [10300]
    assert [r.amount for r in ledger.reversals_for(legs[Recipient.DEVELOPER].gateway_transfer_id)] == [1000]
    assert ledger.balance(bag.merchant.stripe_account_id) == 0
    bag.refresh_from_db()
    assert (bag.status, bag.financial_status) == (BagStatus.REFUNDED, FinancialStatus.REFUNDED)
    payment.refresh_from_db()
    assert payment.amount_refunded == 11300
    assert {t.status for t in Transfer.objects.filter(bag=bag)} == {Transfer.Status.REVERSED}
    kinds = list(RefundEvent.objects.filter(refund=refund).values_list("kind", flat=True))
    assert kinds == ["RECORDED", "CLAIMED", "STEP_SUCCEEDED", "STEP_SUCCEEDED", "STEP_SUCCEEDED", "STATUS_CHANGED"]


def test_partial_refund_takes_commission_only_on_the_sub_total():
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, commission_rate="10.00")
    sku = bag.skus.get()
    refund = record(bag, skus=[RefundSkuLine(order_sku_id=sku.pk, quantity=1)], shipping_amount=500, tax_amount=400)
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert refund.amount == 5900
    assert refund.developer_transfer_reversal_amount_usd == 500  # 10% of the 5000 sub_total part
    assert refund.merchant_transfer_reversal_amount_usd == 5400
    bag.refresh_from_db()
    assert (bag.status, bag.financial_status) == (BagStatus.PARTIALLY_REFUNDED, FinancialStatus.PARTIALLY_REFUNDED)


def test_processing_twice_moves_money_once():
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    refund_process(refund_id=refund.pk)
    payment = PaymentTransaction.objects.get(order=bag.order)
    assert len(ledger.refunds_for(payment.gateway_transaction_id)) == 1
    assert ShopperRefund.objects.filter(refund=refund).count() == 1
    assert TransferReversal.objects.filter(refund=refund).count() == 2


def test_idempotency_keys_derive_from_our_ids():
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    keys = set(TransferReversal.objects.filter(refund=refund).values_list("idempotency_key", flat=True))
    assert keys == {f"refund-{refund.pk}-merchant-reversal", f"refund-{refund.pk}-channel-reversal"}
    assert ShopperRefund.objects.get(refund=refund).idempotency_key == f"refund-{refund.pk}-shopper-refund"


def test_order_without_payment_fails_with_an_error():
    from tests.factories import BagFactory

    bag = BagFactory()
    refund = record(bag, amount=100)
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert refund.errors.get().error_code == 3009


def test_cancel_before_money_moved_releases_quantities():
    operator = OperatorFactory()
    bag = funded_bag(skus=((5000, 2),))
    sku = bag.skus.get()
    refund = record(bag, skus=[RefundSkuLine(order_sku_id=sku.pk, quantity=2)])
    refund_cancel(refund=refund, user=operator, note="duplicate")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.CANCELED
    assert OrderSku.objects.get(pk=sku.pk).quantity_refunded == 0
    event = refund.events.last()
    assert (event.kind, event.actor, event.user_id) == ("CANCELED", f"operator:{operator.username}", operator.pk)
    # The amount is refundable again.
    assert record(bag, external_id="again").amount == bag.total


def test_cancel_after_money_moved_is_refused():
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    with pytest.raises(InvalidTransition):
        refund_cancel(refund=refund, user=OperatorFactory())


def test_mark_external_requires_a_note_and_a_repairable_status():
    operator = OperatorFactory()
    bag = funded_bag()
    refund = record(bag)
    with pytest.raises(ValidationFailed):
        refund_mark_external(refund=refund, user=operator, note="  ")
    refund_mark_external(refund=refund, user=operator, note="Refunded by cheque")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.EXTERNAL
    bag.refresh_from_db()
    assert bag.financial_status == FinancialStatus.REFUNDED
    with pytest.raises(InvalidTransition):
        refund_mark_external(refund=refund, user=operator, note="again")


def test_retry_after_permanent_shopper_failure_uses_a_new_key_and_completes():
    operator = OperatorFactory()
    bag = funded_bag()
    refund = record(bag)
    ledger.inject_fault("charge_disputed", times=1, path="/v1/refunds")
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    error = refund.errors.get()
    assert error.error_code == 3007 and error.step == "SHOPPER_REFUND"
    refund_retry(refund=refund, user=operator)
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    shopper = ShopperRefund.objects.get(refund=refund)
    assert shopper.idempotency_key == f"refund-{refund.pk}-shopper-refund-g2"
    payment = PaymentTransaction.objects.get(order=bag.order)
    assert len(ledger.refunds_for(payment.gateway_transaction_id)) == 1
    refund_error_resolve(error=error, user=operator, note="Dispute closed")
    error.refresh_from_db()
    assert error.resolved and error.date_resolved and error.resolved_by == operator
    with pytest.raises(InvalidTransition):
        refund_error_resolve(error=error, user=operator)


def test_retry_is_refused_for_a_completed_refund():
    bag = funded_bag()
    refund = record(bag)
    refund_process(refund_id=refund.pk)
    with pytest.raises(InvalidTransition):
        refund_retry(refund=refund, user=OperatorFactory())


def test_sweep_requeues_only_stuck_refunds(settings):
    settings.REFUND_STUCK_AFTER_SECONDS = 60
    bag = funded_bag()
    stuck = record(bag, amount=100, external_id="stuck")
    fresh = record(bag, amount=100, external_id="fresh")
    old = timezone.now() - timezone.timedelta(seconds=600)
    Refund.objects.filter(pk=stuck.pk).update(next_attempt_at=old)
    assert refund_sweep_stuck() == [stuck.pk]
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    # Tasks run in-process in tests: the swept refund was processed, the fresh one left alone.
    assert stuck.status == RefundStatus.COMPLETED
    assert fresh.status == RefundStatus.PROCESSING
    assert stuck.events.filter(kind="REQUEUED").exists()

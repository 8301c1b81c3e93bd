from tests.factories import (
    RefundErrorFactory,
    RefundSkuFactory,
    ShopperRefundFactory,
    TransferReversalFactory,
)


def test_factories_build_a_consistent_refund_world(db):
    sku = RefundSkuFactory()
    assert sku.order_sku.bag_id == sku.refund.bag_id
    reversal = TransferReversalFactory()
    assert reversal.transfer.bag_id == reversal.refund.bag_id
    shopper = ShopperRefundFactory()
    assert shopper.payment_transaction.order_id == shopper.refund.bag.order_id
    error = RefundErrorFactory()
    assert error.refund.status == "FAILED"

"""Operator repairs outside a test transaction: their work is enqueued when it really commits.

With tasks run in-process (as in development and the live-server browser tests) the enqueued pass
runs at the commit itself; it must find the refund's advisory lock released, or it is refused as
"another worker is processing this refund" and the refund stays PROCESSING until the stuck sweep.
A real worker taking the message before the repair released its lock is refused the same way."""

import pytest

from refunds.models import RefundEvent, RefundSource, RefundStatus
from refunds.services import refund_process, refund_record, refund_retry
from stripe_sandbox import ledger
from tests.factories import OperatorFactory
from tests.world import funded_bag

pytestmark = pytest.mark.django_db(transaction=True)


def test_retry_enqueues_its_pass_after_releasing_the_lock_and_the_refund_completes():
    bag = funded_bag()
    refund = refund_record(bag=bag, enqueue=False, source=RefundSource.PLATFORM_WEBHOOK, actor="test").refund
    ledger.inject_fault("charge_disputed", times=1, path="/v1/refunds")
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED

    refund_retry(refund=refund, user=OperatorFactory(), note="Dispute closed")

    # No explicit refund_process here: the pass the retry enqueued on commit did the work.
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    assert len(ledger.refunds_for(bag.order.payment_transaction.gateway_transaction_id)) == 1
    assert refund.events.filter(kind=RefundEvent.Kind.RETRY_REQUESTED).count() == 1

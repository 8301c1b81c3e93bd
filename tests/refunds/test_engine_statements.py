"""How many statements and transactions the engine's success path costs the product (issue #20)."""

import pytest

from refunds.models import RefundSource, RefundStatus
from refunds.services import refund_process, refund_record
from tests.refunds.statements import StatementLog
from tests.world import funded_bag

pytestmark = pytest.mark.django_db(transaction=True)


def test_measure(settings):
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = ""
    bag = funded_bag()
    refund = refund_record(bag=bag, enqueue=False, source=RefundSource.PLATFORM_WEBHOOK, actor="test").refund
    with StatementLog() as log:
        outcome = refund_process(refund_id=refund.pk)
    assert outcome.status == RefundStatus.COMPLETED
    print(log.report())
    assert 0

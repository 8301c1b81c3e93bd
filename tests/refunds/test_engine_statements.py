"""Issue #20: the database cost of the engine's success path, pinned so a regression shows.

One full pass (plan, merchant reversal, channel reversal, shopper refund, final status, bag and order
status, audit trail and outbox) through the real gateway and the in-process Stripe sandbox, on a real
PostgreSQL. Only the product's statements count: the sandbox's own (its tables are stripe_sandbox_*)
stand for Stripe's servers, and its webhooks (which Stripe would send as separate requests) are off.

Before issue #20 this pass took 54 statements in 18 transactions; set-based planning (one
transaction: the bag lock, the amounts already planned, the transfers with what other refunds
reversed, the step rows in bulk, the claim), the shopper step and forwarding read with the refund,
the attempt charge and the step's "sent" mark in one transaction, and the bag's refunded total with
its drops in one statement brought it to the bounds below. A row lock and the sums it guards stay
separate statements: in READ COMMITTED a statement that waited for a lock reads other tables as of
its start (tests/reliability/test_fault_matrix_concurrency.py, the plan after a concurrent plan)."""

import pytest

from notifications.models import WebhookEvent
from payments.models import ShopperRefund, TransferReversal
from refunds.models import BagStatus, RefundEvent, RefundSource, RefundStatus
from refunds.services import refund_process, refund_record
from tests.refunds.statements import StatementLog
from tests.world import funded_bag

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MAX_PRODUCT_STATEMENTS = 44
MAX_PRODUCT_TRANSACTIONS = 11


@pytest.fixture(autouse=True)
def _stripe_events_not_inline(settings):
    settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER = ""


def test_one_successful_pass_stays_within_its_statement_budget():
    bag = funded_bag()
    refund = refund_record(bag=bag, enqueue=False, source=RefundSource.PLATFORM_WEBHOOK, actor="test").refund

    with StatementLog() as log:
        outcome = refund_process(refund_id=refund.pk)

    assert outcome.status == RefundStatus.COMPLETED
    assert len(log.product) <= MAX_PRODUCT_STATEMENTS, log.report()
    assert log.product_transactions <= MAX_PRODUCT_TRANSACTIONS, log.report()
    assert any(s.sandbox for s in log.statements)  # the sandbox really ran, and was kept apart
    # What those statements had to write, all of it.
    assert set(TransferReversal.objects.filter(refund=refund).values_list("status", flat=True)) == {"COMPLETE"}
    assert ShopperRefund.objects.get(refund=refund).status == ShopperRefund.Status.SUCCEEDED
    assert list(RefundEvent.objects.filter(refund=refund).order_by("pk").values_list("kind", flat=True)) == [
        "RECORDED",
        "CLAIMED",
        "STEP_SUCCEEDED",
        "STEP_SUCCEEDED",
        "STEP_SUCCEEDED",
        "STATUS_CHANGED",
    ]
    assert sorted(WebhookEvent.objects.filter(bag=bag).values_list("event_type", flat=True)) == [
        "ORDER_REFUNDED",
        "ORDER_UPDATED",
        "REFUND_COMPLETED",
        "REFUND_PROCESSING",  # written when the refund was recorded
    ]
    bag.refresh_from_db()
    assert bag.status == BagStatus.REFUNDED


def test_a_duplicate_delivery_of_a_finished_refund_costs_three_statements():
    """A redelivered message for a refund already final: the lock, one read, the unlock."""
    bag = funded_bag()
    refund = refund_record(bag=bag, enqueue=False, source=RefundSource.PLATFORM_WEBHOOK, actor="test").refund
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED

    with StatementLog() as log:
        outcome = refund_process(refund_id=refund.pk)

    assert outcome.status == RefundStatus.COMPLETED and outcome.detail == "nothing to do"
    assert len(log.product) == 3, log.report()  # lock, the one read, unlock

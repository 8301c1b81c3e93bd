"""Bag and order statuses follow the refunds whose money moved in both directions: a late Stripe
failure (refunds.services.stripe_changes, a COMPLETED refund's shopper refund failed after it had
succeeded) takes the bag back down, to the statuses it had before its first refund when nothing
refunded is left."""

import pytest

from notifications.models import EventType, WebhookEvent
from payments.models import ShopperRefund
from refunds.models import BagStatus, FinancialStatus, OrderStatus, RefundSource, RefundStatus
from refunds.services import refund_process, refund_record, refund_retry
from refunds.services.stripe_changes import shopper_refund_sync
from stripe_sandbox.models import SandboxRefund
from tests.factories import BagFactory
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def completed_refund(bag, **kwargs):
    refund = refund_record(bag=bag, source=RefundSource.CHANNEL_API, actor="test", enqueue=False, **kwargs).refund
    assert refund_process(refund_id=refund.pk).status == RefundStatus.COMPLETED
    return refund


def fail_late(refund):
    """Stripe fails the shopper refund days after it succeeded (the sandbox does it on the next read)."""
    shopper = ShopperRefund.objects.get(refund=refund)
    SandboxRefund.objects.filter(stripe_id=shopper.gateway_refund_id).update(fails_on_next_read=True)
    change = shopper_refund_sync(stripe_refund_id=shopper.gateway_refund_id, refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED, change.outcome


def statuses(bag):
    bag.refresh_from_db()
    bag.order.refresh_from_db()
    return bag.status, bag.financial_status, bag.order.status


def test_the_only_refund_failing_late_puts_bag_and_order_back_as_they_were():
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, status=BagStatus.COMPLETED)
    bag.order.status = OrderStatus.COMPLETED
    bag.order.save(update_fields=["status"])
    refund = completed_refund(bag)
    assert statuses(bag) == (BagStatus.REFUNDED, FinancialStatus.REFUNDED, OrderStatus.REFUNDED)

    fail_late(refund)

    assert statuses(bag) == (BagStatus.COMPLETED, FinancialStatus.PAID, OrderStatus.COMPLETED)
    assert (bag.status_before_refund, bag.financial_status_before_refund, bag.order.status_before_refund) == (
        "",
        "",
        "",
    )
    # The channel hears the bag is paid again (ORDER_UPDATED with the new financial status).
    updates = WebhookEvent.objects.filter(bag_id=bag.pk, event_type=EventType.ORDER_UPDATED)
    assert updates.filter(dedupe_key=f"bag:{bag.pk}:{EventType.ORDER_UPDATED}:{FinancialStatus.PAID}:0:r1").count() == 1

    # The operator retries it (the shopper gave a new card): up again, from those statuses.
    refund_retry(refund=refund, note="Shopper's new card")
    assert refund_process(refund_id=refund.pk).status == RefundStatus.COMPLETED
    assert statuses(bag) == (BagStatus.REFUNDED, FinancialStatus.REFUNDED, OrderStatus.REFUNDED)
    assert (bag.status_before_refund, bag.order.status_before_refund) == (BagStatus.COMPLETED, OrderStatus.COMPLETED)
    # The same refunded total as before the drop is news again: ORDER_REFUNDED twice in all.
    refunded_events = WebhookEvent.objects.filter(bag_id=bag.pk, event_type=EventType.ORDER_REFUNDED)
    assert sorted(refunded_events.values_list("dedupe_key", flat=True)) == [
        f"bag:{bag.pk}:{EventType.ORDER_REFUNDED}:11300",
        f"bag:{bag.pk}:{EventType.ORDER_REFUNDED}:11300:r1",
    ]


def test_one_of_two_refunds_failing_late_takes_a_refunded_bag_down_to_partially_refunded():
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, status=BagStatus.ACCEPTED)
    completed_refund(bag, amount=3000)
    rest = completed_refund(bag)
    assert statuses(bag) == (BagStatus.REFUNDED, FinancialStatus.REFUNDED, OrderStatus.REFUNDED)

    fail_late(rest)

    assert statuses(bag) == (
        BagStatus.PARTIALLY_REFUNDED,
        FinancialStatus.PARTIALLY_REFUNDED,
        OrderStatus.PARTIALLY_REFUNDED,
    )
    assert bag.status_before_refund == BagStatus.ACCEPTED  # kept while a refund still counts


def test_the_order_stays_partially_refunded_while_another_bag_is_refunded():
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, status=BagStatus.COMPLETED)
    BagFactory(
        order=bag.order,
        merchant=bag.merchant,
        status=BagStatus.PARTIALLY_REFUNDED,
        financial_status=FinancialStatus.PARTIALLY_REFUNDED,
    )
    refund = completed_refund(bag)
    assert statuses(bag)[2] == OrderStatus.PARTIALLY_REFUNDED

    fail_late(refund)

    assert statuses(bag) == (BagStatus.COMPLETED, FinancialStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)


def test_a_canceled_bag_stays_canceled_when_its_refund_fails_late():
    bag = funded_bag(skus=((5000, 2),), shipping=500, tax=800, status=BagStatus.CANCELED)
    refund = completed_refund(bag)
    assert statuses(bag)[:2] == (BagStatus.CANCELED, FinancialStatus.REFUNDED)

    fail_late(refund)

    assert statuses(bag)[:2] == (BagStatus.CANCELED, FinancialStatus.PAID)

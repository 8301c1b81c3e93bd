"""A bag's (and its order's) status, as refunds and platform cancellations move it."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from refunds import announcements as notifications
from refunds.amounts import bag_totals
from refunds.models import Bag, BagStatus, FinancialStatus, Order, OrderStatus, Refund, RefundStatus

logger = logging.getLogger(__name__)

# Refund statuses whose money moved (to the shopper) and which count toward the bag's refunded state.
MONEY_MOVED_STATUSES = (
    RefundStatus.COMPLETED,
    RefundStatus.PARTIALLY_COMPLETED,
    RefundStatus.EXTERNAL,
)


def bag_update_refund_state(*, bag_id: int) -> None:
    """Bag (and order) financial status follow the refunds whose money moved."""
    bag = Bag.objects.select_for_update().get(pk=bag_id)
    refunded = (
        Refund.objects.filter(bag=bag, status__in=MONEY_MOVED_STATUSES).aggregate(total=Sum("amount"))["total"] or 0
    )
    total = bag_totals(bag).total
    if refunded <= 0:
        return
    if refunded >= total:
        bag.financial_status = FinancialStatus.REFUNDED
        if bag.status != BagStatus.CANCELED:
            bag.status = BagStatus.REFUNDED
    else:
        bag.financial_status = FinancialStatus.PARTIALLY_REFUNDED
        if bag.status != BagStatus.CANCELED:
            bag.status = BagStatus.PARTIALLY_REFUNDED
    bag.save(update_fields=["financial_status", "status", "date_last_modified"])
    statuses = set(Bag.objects.filter(order_id=bag.order_id).values_list("financial_status", flat=True))
    order_status = OrderStatus.REFUNDED if statuses == {FinancialStatus.REFUNDED} else OrderStatus.PARTIALLY_REFUNDED
    Order.objects.filter(pk=bag.order_id).update(status=order_status, date_last_modified=timezone.now())
    notifications.bag_refund_events_emit(bag, refunded_amount=refunded)


def bag_mark_canceled(*, bag: Bag, actor: str) -> bool:
    """The platform says the bag's order is cancelled: the bag becomes CANCELED (with or without a
    refund, as Violet's ORDER_CANCELLED means). True when this call changed it."""
    with transaction.atomic():
        current = Bag.objects.select_for_update().get(pk=bag.pk)
        if current.status == BagStatus.CANCELED:
            return False
        previous = current.status
        current.status = BagStatus.CANCELED
        current.save(update_fields=["status", "date_last_modified"])
        notifications.bag_cancel_events_emit(current)
    logger.info("bag %s: %s -> CANCELED by %s", bag.pk, previous, actor)
    bag.status = BagStatus.CANCELED
    return True

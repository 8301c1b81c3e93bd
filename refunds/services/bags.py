"""A bag's (and its order's) status, as refunds and platform cancellations move it."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from refunds import announcements as notifications
from refunds.amounts import bag_totals
from refunds.models import (
    Bag,
    BagStatus,
    FinancialStatus,
    Order,
    OrderStatus,
    Refund,
    RefundEvent,
    RefundStatus,
)

logger = logging.getLogger(__name__)

# Refund statuses whose money moved (to the shopper) and which count toward the bag's refunded state.
MONEY_MOVED_STATUSES = (
    RefundStatus.COMPLETED,
    RefundStatus.PARTIALLY_COMPLETED,
    RefundStatus.EXTERNAL,
)


# The bag's statuses that say "some money went back"; the order's likewise.
_REFUNDED_FINANCIAL = (FinancialStatus.REFUNDED, FinancialStatus.PARTIALLY_REFUNDED)
_REFUNDED_BAG = (BagStatus.REFUNDED, BagStatus.PARTIALLY_REFUNDED)
_REFUNDED_ORDER = (OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED)


def bag_update_refund_state(*, bag_id: int) -> None:
    """Bag (and order) statuses follow the refunds whose money moved, in both directions: up as
    refunds complete, and back down when one stops counting (a late Stripe failure makes a
    COMPLETED refund FAILED). At zero the statuses the bag and order had before their first refund
    come back (kept in `status_before_refund`; the model defaults for rows refunded before it was
    kept). A CANCELED bag stays CANCELED. Nothing changes (and nothing is announced) for a bag that
    has no refund and never had one."""
    bag = Bag.objects.select_for_update().get(pk=bag_id)
    # After the lock, in a statement of its own (one that waited for a row lock reads other tables as
    # of its start): the refunded total and the refunds' drops together.
    moved = Refund.objects.filter(bag=OuterRef("pk"), status__in=MONEY_MOVED_STATUSES).values("bag")
    counts = (
        Bag.objects.filter(pk=bag_id)
        .annotate(
            refunded=Coalesce(Subquery(moved.annotate(total=Sum("amount")).values("total")[:1]), Value(0)),
            drops=Coalesce(
                Subquery(_refund_drops(OuterRef("pk")).values("refund__bag").annotate(n=Count("pk")).values("n")[:1]),
                Value(0),
            ),
        )
        .values("refunded", "drops")
        .get()
    )
    refunded = counts["refunded"]
    total = bag_totals(bag).total
    was_refunded = bag.financial_status in _REFUNDED_FINANCIAL
    if refunded <= 0 and not was_refunded:
        return
    if refunded > 0 and not was_refunded:
        bag.status_before_refund = bag.status
        bag.financial_status_before_refund = bag.financial_status
    if refunded <= 0:
        bag.financial_status = bag.financial_status_before_refund or FinancialStatus.PAID
        if bag.status in _REFUNDED_BAG:
            bag.status = bag.status_before_refund or BagStatus.ACCEPTED
        bag.status_before_refund = ""
        bag.financial_status_before_refund = ""
        logger.info("bag %s: no refund counts any more; back to %s / %s", bag.pk, bag.status, bag.financial_status)
    elif refunded >= total:
        bag.financial_status = FinancialStatus.REFUNDED
        if bag.status != BagStatus.CANCELED:
            bag.status = BagStatus.REFUNDED
    else:
        bag.financial_status = FinancialStatus.PARTIALLY_REFUNDED
        if bag.status != BagStatus.CANCELED:
            bag.status = BagStatus.PARTIALLY_REFUNDED
    bag.save(
        update_fields=[
            "financial_status",
            "status",
            "status_before_refund",
            "financial_status_before_refund",
            "date_last_modified",
        ]
    )
    _order_update_refund_state(bag.order_id)
    notifications.bag_refund_events_emit(bag, refunded_amount=refunded, drops=counts["drops"])


def _refund_drops(bag) -> QuerySet[RefundEvent]:
    """The times a refund of the bag left the statuses whose money moved (a late Stripe failure
    makes a COMPLETED refund FAILED): the audit trail's status changes say it."""
    return RefundEvent.objects.filter(
        refund__bag=bag, kind=RefundEvent.Kind.STATUS_CHANGED, from_status__in=MONEY_MOVED_STATUSES
    ).exclude(to_status__in=MONEY_MOVED_STATUSES)


def _order_update_refund_state(order_id: int) -> None:
    order = Order.objects.select_for_update().get(pk=order_id)
    # After the lock, in a statement of its own: another bag of the order may have committed its new
    # status while this transaction waited for the order (a statement that waited for a row lock
    # reads other tables as of its start).
    statuses = set(Bag.objects.filter(order_id=order_id).values_list("financial_status", flat=True))
    if statuses & set(_REFUNDED_FINANCIAL):
        if order.status not in _REFUNDED_ORDER:
            order.status_before_refund = order.status
        order.status = (
            OrderStatus.REFUNDED if statuses == {FinancialStatus.REFUNDED} else OrderStatus.PARTIALLY_REFUNDED
        )
    elif order.status in _REFUNDED_ORDER:
        order.status = order.status_before_refund or OrderStatus.ACCEPTED
        order.status_before_refund = ""
    order.save(update_fields=["status", "status_before_refund", "date_last_modified"])


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

"""What is still refundable on a bag: the read every refund entry point validates against."""

from dataclasses import dataclass

from django.db.models import Q, Sum

from payments.splits import BagTotals
from refunds.models import Bag, ForwardingState, OrderSku, Refund, RefundStatus
from violet_refunds.money import AmountParts

# Statuses whose amounts no longer count against the bag: nothing moved and nothing will.
NOT_COUNTING_STATUSES = (RefundStatus.CANCELED,)
# A channel refund its platform refused ended FAILED before anything moved, and nothing ever will
# (refunds.services.forwarding): its amounts do not count either (its SKU quantities were given back).
NOT_COUNTING = Q(status__in=NOT_COUNTING_STATUSES) | Q(
    status=RefundStatus.FAILED, forwarding__state=ForwardingState.REFUSED
)


@dataclass(frozen=True)
class Remaining:
    parts: AmountParts
    skus: dict[int, int]  # order_sku_id -> quantity still refundable

    @property
    def total(self) -> int:
        return self.parts.total


def bag_totals(bag: Bag) -> BagTotals:
    return BagTotals(
        sub_total=bag.sub_total,
        shipping_total=bag.shipping_total,
        tax_total=bag.tax_total,
        discount_total=bag.discount_total,
        commission_rate=bag.commission_rate,
    )


def bag_refunded_parts(bag: Bag, *, exclude_refund_id: int | None = None) -> AmountParts:
    """Sum of the parts of every refund on the bag that counts (all but CANCELED)."""
    qs = Refund.objects.filter(bag=bag).exclude(NOT_COUNTING)
    if exclude_refund_id is not None:
        qs = qs.exclude(pk=exclude_refund_id)
    sums = qs.aggregate(sub_total=Sum("sub_total_amount"), shipping=Sum("shipping_amount"), tax=Sum("tax_amount"))
    return AmountParts(sub_total=sums["sub_total"] or 0, shipping=sums["shipping"] or 0, tax=sums["tax"] or 0)


def bag_refundable_remaining(bag: Bag) -> Remaining:
    refundable = bag_totals(bag).refundable
    refunded = bag_refunded_parts(bag)
    parts = AmountParts(
        sub_total=max(refundable.sub_total - refunded.sub_total, 0),
        shipping=max(refundable.shipping - refunded.shipping, 0),
        tax=max(refundable.tax - refunded.tax, 0),
    )
    skus = {
        sku_id: quantity - refunded_qty
        for sku_id, quantity, refunded_qty in OrderSku.objects.filter(bag=bag).values_list(
            "id", "quantity", "quantity_refunded"
        )
    }
    return Remaining(parts=parts, skus=skus)

"""Working out a refund's parts (sub_total, shipping, tax) from what was asked, against what is
still refundable on the bag. Called by refunds.services.record under the bag's row lock, so what is
"left" is read once, by one writer at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from payments import splits
from refunds.amounts import Remaining
from refunds.models import Bag, OrderSku
from violet_refunds.money import AmountParts, format_amount

if TYPE_CHECKING:
    from refunds.services.record import PlatformRefundRequest, RefundSkuLine


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_sku_lines(
    bag: Bag, skus: Sequence[RefundSkuLine], remaining: Remaining, errors: dict[str, list[str]]
) -> list[tuple[OrderSku, int, int | None]]:
    if not skus:
        return []
    by_id = {sku.pk: sku for sku in OrderSku.objects.filter(bag=bag)}
    rows: list[tuple[OrderSku, int, int | None]] = []
    problems: list[str] = []
    seen: set[int] = set()
    for line in skus:
        sku = by_id.get(line.order_sku_id)
        if sku is None:
            problems.append(f"order_sku_id {line.order_sku_id} does not belong to this bag.")
            continue
        if line.order_sku_id in seen:
            problems.append(f"order_sku_id {line.order_sku_id} is listed twice.")
            continue
        seen.add(line.order_sku_id)
        if not is_int(line.quantity) or line.quantity < 1:
            problems.append(f"quantity_refunded for order_sku_id {sku.pk} must be at least 1.")
            continue
        left = remaining.skus.get(sku.pk, 0)
        if line.quantity > left:
            problems.append(f"quantity_refunded {line.quantity} for order_sku_id {sku.pk} exceeds the {left} left.")
            continue
        if line.amount is not None and (not is_int(line.amount) or line.amount < 0):
            problems.append(f"amount_refunded for order_sku_id {sku.pk} must be a non-negative integer.")
            continue
        if line.amount is not None and line.amount > sku.price * line.quantity:
            problems.append(
                f"amount_refunded {format_amount(line.amount, bag.currency)} for order_sku_id {sku.pk} exceeds "
                f"price x quantity ({format_amount(sku.price * line.quantity, bag.currency)})."
            )
            continue
        rows.append((sku, line.quantity, line.amount))
    if problems:
        errors["skus"] = problems
    return rows


def resolve_parts(*, amount, sub_total, shipping, tax, sku_rows, remaining, errors, currency: str) -> AmountParts:
    # Messages show money as people read it ("146.00 USD"), never bare minor units: these texts reach
    # operators (inbound event errors), merchants (the portal form) and API clients alike.
    left = remaining.parts
    parts_given = any(v is not None for v in (sub_total, shipping, tax))
    if sub_total is None and sku_rows:
        sub_total = sum(a if a is not None else sku.price * q for sku, q, a in sku_rows)
        sub_total = min(sub_total, left.sub_total)
        parts_given = True
    if parts_given:
        parts = AmountParts(sub_total=sub_total or 0, shipping=shipping or 0, tax=tax or 0)
        if amount is not None and amount != parts.total:
            errors["amount"] = [
                f"amount {format_amount(amount, currency)} does not equal sub_total + shipping + tax "
                f"({format_amount(parts.total, currency)})."
            ]
    elif amount is not None:
        if amount > left.total:
            errors["amount"] = [
                f"amount {format_amount(amount, currency)} exceeds the {format_amount(left.total, currency)} "
                "still refundable on this bag."
            ]
            return AmountParts.ZERO
        if amount <= 0:
            errors["amount"] = ["The refund amount must be greater than 0."]
            return AmountParts.ZERO
        parts = splits.split_amount_pro_rata(amount, left)
    else:
        parts = left
    for name, value, limit in (
        ("sub_total_amount", parts.sub_total, left.sub_total),
        ("shipping_amount", parts.shipping, left.shipping),
        ("tax_amount", parts.tax, left.tax),
    ):
        if value > limit:
            errors[name] = [
                f"{format_amount(value, currency)} exceeds the {format_amount(limit, currency)} still refundable."
            ]
    return parts


def platform_amounts(
    bag: Bag, request: PlatformRefundRequest, remaining: Remaining, notes: list[str]
) -> dict[str, Any]:
    """refund_record's amount arguments for what a platform says was refunded.

    - No amount and no parts: nothing (everything still refundable is refunded).
    - Parts from the platform (Shopify): those parts. If the money actually returned differs from
      them (discounts, `refund_discrepancy` adjustments), the money is the truth: shipping and tax
      stay as the platform split them and the difference lands on sub_total.
    - Money plus refunded lines and/or "shipping included" (Wix): sub_total = the lines at bag
      prices, shipping = what is left of it when included, tax = the rest.
    - Only money, or parts that cannot hold it: the amount, divided pro rata over what is left.
    """
    if request.amount is None and request.parts is None:
        return {}
    parts = request.parts
    if parts is not None and request.amount is not None and parts.total != request.amount:
        sub_total = request.amount - parts.shipping - parts.tax
        parts = AmountParts(sub_total, parts.shipping, parts.tax) if sub_total >= 0 else None
    elif parts is None and (request.skus or request.shipping_included):
        parts = _parts_from_lines(bag, request, remaining)
    if parts is None:
        if request.skus or request.parts is not None:
            notes.append(f"refund {request.external_id}: the platform's split does not fit, amount divided pro rata")
        return {"amount": request.amount}
    return {
        "amount": parts.total,
        "sub_total_amount": parts.sub_total,
        "shipping_amount": parts.shipping,
        "tax_amount": parts.tax,
        "shipping_tax_amount": min(request.shipping_tax, parts.tax),
        "skus": list(request.skus),
    }


def _parts_from_lines(bag: Bag, request: PlatformRefundRequest, remaining: Remaining) -> AmountParts | None:
    prices = dict(
        OrderSku.objects.filter(bag=bag, pk__in=[line.order_sku_id for line in request.skus]).values_list("pk", "price")
    )
    amount = request.amount or 0
    left = remaining.parts
    lines_total = sum(prices.get(line.order_sku_id, 0) * line.quantity for line in request.skus)
    sub_total = min(lines_total, amount, left.sub_total)
    shipping = min(left.shipping, amount - sub_total) if request.shipping_included else 0
    tax = amount - sub_total - shipping
    if tax > left.tax:
        return None
    return AmountParts(sub_total, shipping, tax)

"""Recording refunds: the one way a refund comes into existence, whoever asks for it.

Entry points (platform signals, merchant notices, the channel API, operators) call `refund_record`.
Under the bag's row lock it reads what is still refundable, validates the request against it,
works out the refund's parts (sub_total, shipping, tax), writes the refund with its SKU lines, and
enqueues its processing after commit. Idempotent on (bag, external_id) and (bag, request_key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from notifications import services as notifications
from payments import splits
from refunds.amounts import bag_refundable_remaining
from refunds.models import (
    Bag,
    BagStatus,
    OrderSku,
    ReasonCode,
    Refund,
    RefundEvent,
    RefundSku,
    RefundSource,
    RefundStatus,
)
from refunds.services.engine import enqueue_processing
from refunds.services.events import event_record
from violet_refunds.exceptions import ValidationFailed
from violet_refunds.money import AmountParts

# Spec section 2.2: the two doc generations agree a bag IN_PROGRESS or REFUNDED cannot be refunded
# and disagree on CANCELED. The seeds make cancellation *the* refund signal on Ecwid, Wix (old
# orders) and SFCC Option 1, so a CANCELED bag must stay refundable.
REFUNDABLE_BAG_STATUSES = frozenset(
    {
        BagStatus.ACCEPTED,
        BagStatus.SUBMITTED,
        BagStatus.COMPLETED,
        BagStatus.PARTIALLY_REFUNDED,
        BagStatus.CANCELED,
    }
)


@dataclass(frozen=True)
class RefundSkuLine:
    order_sku_id: int
    quantity: int
    amount: int | None = None


@dataclass(frozen=True)
class RecordResult:
    refund: Refund
    created: bool


def _existing_refund(bag: Bag, external_id: str | None, request_key: str | None) -> Refund | None:
    if external_id:
        found = Refund.objects.filter(bag=bag, external_id=external_id).first()
        if found:
            return found
    if request_key:
        return Refund.objects.filter(bag=bag, request_key=request_key).first()
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def refund_record(
    *,
    bag: Bag,
    source: str,
    actor: str,
    amount: int | None = None,
    sub_total_amount: int | None = None,
    shipping_amount: int | None = None,
    tax_amount: int | None = None,
    shipping_tax_amount: int = 0,
    skus: Sequence[RefundSkuLine] = (),
    external_id: str | None = None,
    request_key: str | None = None,
    currency: str | None = None,
    reason: str = "",
    reason_code: str = ReasonCode.OTHER,
    restock_items: bool = False,
    notify_customer: bool = False,
    shipping_full_refund: bool = False,
    inbound_event=None,
    user=None,
    enqueue: bool = True,
) -> RecordResult:
    """Record a refund of (part of) a bag and enqueue its processing. Idempotent on
    (bag, external_id) and (bag, request_key): a repeat returns the first refund unchanged."""
    external_id = (external_id or "").strip() or None
    request_key = (request_key or "").strip() or None
    existing = _existing_refund(bag, external_id, request_key)
    if existing:
        return RecordResult(refund=existing, created=False)

    if source not in RefundSource.values:
        raise ValidationFailed(f"Unknown refund source {source!r}.", field_errors={"source": ["invalid"]})
    if reason_code not in ReasonCode.values:
        raise ValidationFailed(
            "Unknown reason code.",
            field_errors={"reason_code": [f"Must be one of {', '.join(ReasonCode.values)}."]},
        )
    if len(reason or "") > 255:
        raise ValidationFailed("Reason is too long.", field_errors={"reason": ["At most 255 characters."]})

    try:
        with transaction.atomic():
            # Serialize every refund of this bag: "what is left" must not be read by two writers at once.
            locked_bag = Bag.objects.select_for_update().get(pk=bag.pk)
            existing = _existing_refund(locked_bag, external_id, request_key)
            if existing:
                return RecordResult(refund=existing, created=False)
            refund = _create_refund(
                bag=locked_bag,
                source=source,
                actor=actor,
                amount=amount,
                sub_total_amount=sub_total_amount,
                shipping_amount=shipping_amount,
                tax_amount=tax_amount,
                shipping_tax_amount=shipping_tax_amount,
                skus=skus,
                external_id=external_id,
                request_key=request_key,
                currency=currency,
                reason=reason or "",
                reason_code=reason_code,
                restock_items=restock_items,
                notify_customer=notify_customer,
                shipping_full_refund=shipping_full_refund,
                inbound_event=inbound_event,
                user=user,
            )
            notifications.refund_event_emit(refund)  # outbox: REFUND_PROCESSING, same transaction
            if enqueue:  # False only for bulk imports/demo data; the stuck sweep picks those up
                transaction.on_commit(lambda: enqueue_processing(refund.pk))
    except IntegrityError:
        # A concurrent writer recorded the same external id / request key first: return theirs.
        existing = _existing_refund(bag, external_id, request_key)
        if existing:
            return RecordResult(refund=existing, created=False)
        raise
    return RecordResult(refund=refund, created=True)


def _create_refund(*, bag: Bag, skus: Sequence[RefundSkuLine], **fields) -> Refund:
    errors: dict[str, list[str]] = {}
    if bag.status not in REFUNDABLE_BAG_STATUSES:
        raise ValidationFailed(
            f"Bag {bag.pk} is {bag.status} and cannot be refunded.",
            field_errors={"bag": [f"Bag status {bag.status} is not refundable."]},
        )
    currency = (fields["currency"] or bag.currency).upper()
    if currency != bag.currency:
        errors["currency"] = [f"The bag is in {bag.currency}; a refund in {currency} is not possible."]

    remaining = bag_refundable_remaining(bag)
    sku_rows = _validate_sku_lines(bag, skus, remaining, errors)
    for name in ("amount", "sub_total_amount", "shipping_amount", "tax_amount", "shipping_tax_amount"):
        value = fields.get(name)
        if value is not None and (not _is_int(value) or value < 0):
            errors[name] = ["Must be a non-negative integer amount in minor units."]
    if errors:
        raise ValidationFailed("The refund is invalid.", field_errors=errors)

    parts = _resolve_parts(
        amount=fields["amount"],
        sub_total=fields["sub_total_amount"],
        shipping=fields["shipping_amount"],
        tax=fields["tax_amount"],
        sku_rows=sku_rows,
        remaining=remaining,
        errors=errors,
    )
    if errors:
        raise ValidationFailed("The refund is invalid.", field_errors=errors)
    if parts.total <= 0:
        raise ValidationFailed(
            "Nothing to refund.", field_errors={"amount": ["The refund amount must be greater than 0."]}
        )
    if fields["shipping_tax_amount"] > parts.tax:
        raise ValidationFailed(
            "Shipping tax exceeds the refunded tax.",
            field_errors={"shipping_tax_amount": ["Cannot exceed tax_amount."]},
        )

    if (
        not sku_rows
        and not skus
        and fields["amount"] is None
        and not any(fields[n] is not None for n in ("sub_total_amount", "shipping_amount", "tax_amount"))
    ):
        # A full refund of what is left returns every remaining item.
        sku_rows = [
            (sku, qty, None) for sku in OrderSku.objects.filter(bag=bag) if (qty := remaining.skus.get(sku.pk, 0)) > 0
        ]

    refund = Refund.objects.create(
        bag=bag,
        external_id=fields["external_id"],
        request_key=fields["request_key"],
        status=RefundStatus.PROCESSING,
        amount=parts.total,
        sub_total_amount=parts.sub_total,
        shipping_amount=parts.shipping,
        shipping_tax_amount=fields["shipping_tax_amount"],
        tax_amount=parts.tax,
        shipping_full_refund=fields["shipping_full_refund"]
        or (parts.shipping > 0 and parts.shipping == bag.shipping_total),
        refund_currency=currency,
        reason=fields["reason"],
        reason_code=fields["reason_code"],
        restock_items=fields["restock_items"],
        notify_customer=fields["notify_customer"],
        source=fields["source"],
        inbound_event=fields["inbound_event"],
        created_by=fields["user"],
        next_attempt_at=timezone.now(),
    )
    for sku, quantity, line_amount in sku_rows:
        RefundSku.objects.create(
            refund=refund,
            order_sku=sku,
            quantity_refunded=quantity,
            amount_refunded=line_amount,
            external_id=sku.external_id,
        )
        # The CHECK (quantity_refunded <= quantity) backs this up in the database.
        OrderSku.objects.filter(pk=sku.pk).update(quantity_refunded=F("quantity_refunded") + quantity)
    event_record(
        refund,
        RefundEvent.Kind.RECORDED,
        actor=fields["actor"],
        user=fields["user"],
        to_status=RefundStatus.PROCESSING,
        message=f"Recorded from {refund.get_source_display()}.",
        data={"amount": refund.amount, "currency": currency, "external_id": refund.external_id},
    )
    return refund


def _validate_sku_lines(bag, skus, remaining, errors) -> list[tuple[OrderSku, int, int | None]]:
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
        if not _is_int(line.quantity) or line.quantity < 1:
            problems.append(f"quantity_refunded for order_sku_id {sku.pk} must be at least 1.")
            continue
        left = remaining.skus.get(sku.pk, 0)
        if line.quantity > left:
            problems.append(f"quantity_refunded {line.quantity} for order_sku_id {sku.pk} exceeds the {left} left.")
            continue
        if line.amount is not None and (not _is_int(line.amount) or line.amount < 0):
            problems.append(f"amount_refunded for order_sku_id {sku.pk} must be a non-negative integer.")
            continue
        if line.amount is not None and line.amount > sku.price * line.quantity:
            problems.append(
                f"amount_refunded for order_sku_id {sku.pk} exceeds price x quantity ({sku.price * line.quantity})."
            )
            continue
        rows.append((sku, line.quantity, line.amount))
    if problems:
        errors["skus"] = problems
    return rows


def _resolve_parts(*, amount, sub_total, shipping, tax, sku_rows, remaining, errors) -> AmountParts:
    left = remaining.parts
    parts_given = any(v is not None for v in (sub_total, shipping, tax))
    if sub_total is None and sku_rows:
        sub_total = sum(a if a is not None else sku.price * q for sku, q, a in sku_rows)
        sub_total = min(sub_total, left.sub_total)
        parts_given = True
    if parts_given:
        parts = AmountParts(sub_total=sub_total or 0, shipping=shipping or 0, tax=tax or 0)
        if amount is not None and amount != parts.total:
            errors["amount"] = [f"amount {amount} does not equal sub_total + shipping + tax ({parts.total})."]
    elif amount is not None:
        if amount > left.total:
            errors["amount"] = [f"amount {amount} exceeds the {left.total} still refundable on this bag."]
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
            errors[name] = [f"{value} exceeds the {limit} still refundable."]
    return parts

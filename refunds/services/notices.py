"""Refund notices (seed 000, Salesforce Commerce Cloud, Option 2: "Notify Violet of Refunds").

The one path of a refund notice: the portal form, the portal's refund-notice API and the operators'
admin notice form all end here, and record through `refunds.services.refund_record` like every
other entry point. A notice names the bag, the quantities
per SKU, the shipping and tax refunded, a reason code and the merchant's own refund reference. The
reference becomes the refund's external_id, so sending the same notice twice (double click, a retried
HTTP call, the form and the API) records one refund.

This is the refund domain: whether a merchant may send notices at all is decided by the face that
knows the merchant (portal.selectors for merchants, the admin's selectors for operators) and passed in
as `notices_enabled`; nothing here imports platforms or portal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from refunds.amounts import NOT_COUNTING_STATUSES, Remaining
from refunds.models import Bag, OrderSku, ReasonCode, Refund, RefundSource
from refunds.services.record import RecordResult, RefundSkuLine, RequestMismatch, refund_record
from violet_refunds.exceptions import ApplicationError, RequestUnprocessable, ValidationFailed
from violet_refunds.money import AmountParts, format_amount

REFERENCE_MAX_LENGTH = 255
REASON_MAX_LENGTH = 255
# Cancellations recorded as refunds (SFCC Option 1, Ecwid, old Wix orders) use `cancel:<order id>`
# as external id; a merchant reference must never be mistaken for one.
RESERVED_REFERENCE_PREFIX = "cancel:"

REASON_CODE_LABELS: dict[str, str] = {
    ReasonCode.CUSTOMER: "Customer request or return",
    ReasonCode.INVENTORY: "Out of stock",
    ReasonCode.FRAUD: "Suspected fraud",
    ReasonCode.DECLINED: "Payment declined",
    ReasonCode.OTHER: "Other",
}


class RefundNoticesNotEnabled(ApplicationError):
    """The merchant's platform reports refunds itself (or SFCC Option 1): a notice is refused."""

    status_code = 403
    error_code = "refund_notices_not_enabled"


@dataclass(frozen=True)
class NoticeLine:
    order_sku_id: int
    quantity: int


def reference_problem(reference: str) -> str | None:
    """Why this refund reference cannot be used, or None."""
    if not reference:
        return "Enter your own reference for this refund (its id in your system)."
    if len(reference) > REFERENCE_MAX_LENGTH:
        return f"At most {REFERENCE_MAX_LENGTH} characters."
    if not reference.isprintable():
        return "Use letters, digits and punctuation only (no line breaks or control characters)."
    if reference.lower().startswith(RESERVED_REFERENCE_PREFIX):
        return f"References starting with '{RESERVED_REFERENCE_PREFIX}' are reserved for cancellations."
    return None


def items_amount_for(lines: Sequence[NoticeLine], skus: dict[int, OrderSku]) -> int:
    """Price × quantity over the lines: the most the items part of the refund can be."""
    return sum(skus[line.order_sku_id].price * line.quantity for line in lines if line.order_sku_id in skus)


@dataclass(frozen=True)
class NoticeTotals:
    items: int
    shipping: int
    tax: int

    @property
    def total(self) -> int:
        return self.items + self.shipping + self.tax


def notice_totals(
    *,
    lines: Sequence[NoticeLine],
    skus: dict[int, OrderSku],
    remaining: Remaining,
    shipping: int,
    tax: int,
    items_amount: int | None = None,
) -> NoticeTotals:
    """What the notice refunds, as refund_record will compute it (the items part is capped at the
    bag's net sub_total left, which is below price × quantity when the bag had a discount)."""
    items = items_amount if items_amount is not None else min(items_amount_for(lines, skus), remaining.parts.sub_total)
    return NoticeTotals(items=items, shipping=shipping, tax=tax)


def remaining_before(remaining: Remaining, refund: Refund) -> Remaining:
    """What was left on the bag before `refund`: a second post of the notice that recorded it is
    validated against this (not against what the first post left), so the service can answer it
    with the first refund (the same notice) or refuse it (another notice under the same reference)."""
    if refund.status in NOT_COUNTING_STATUSES:
        return remaining
    skus = dict(remaining.skus)
    for line in refund.skus.all():
        skus[line.order_sku_id] = skus.get(line.order_sku_id, 0) + line.quantity_refunded
    parts = remaining.parts + AmountParts(
        sub_total=refund.sub_total_amount, shipping=refund.shipping_amount, tax=refund.tax_amount
    )
    return Remaining(parts=parts, skus=skus)


def refund_notice_record(
    *,
    bag: Bag,
    actor: str,
    notices_enabled: bool,
    lines: Sequence[NoticeLine] = (),
    shipping_amount: int = 0,
    tax_amount: int = 0,
    items_amount: int | None = None,
    reason_code: str = ReasonCode.OTHER,
    reason: str = "",
    reference: str,
    request_key: str | None = None,
    user=None,
    source: str = RefundSource.MERCHANT_NOTICE,
    enqueue: bool = True,
) -> RecordResult:
    """Record the refund a merchant notified us of (`source` OPERATOR when an operator records it on
    the merchant's behalf). Idempotent on (bag, reference) and on (bag, merchant, request_key): the
    same notice again returns the first refund; another notice under the same reference or key
    raises RequestMismatch (422, field `reference` or `request_key`). Raises
    RefundNoticesNotEnabled (when `notices_enabled` is false: the caller's answer to "may this bag's
    merchant send notices?") or ValidationFailed (field_errors keyed by the service's names: skus,
    sub_total_amount, shipping_amount, tax_amount, amount, bag, reference, reason, reason_code).
    `enqueue=False` records without starting processing (the operator's preview, rolled back)."""
    if not notices_enabled:
        raise RefundNoticesNotEnabled(
            f"{bag.merchant.name} does not send refund notices: refunds are read from "
            f"{bag.merchant.get_platform_display()} directly."
        )
    reference = (reference or "").strip()
    problem = reference_problem(reference)
    if problem:
        raise ValidationFailed("The refund reference is invalid.", field_errors={"reference": [problem]})
    lines = [line for line in lines if line.quantity != 0]
    if items_amount is not None and lines:
        skus = {sku.pk: sku for sku in OrderSku.objects.filter(bag=bag)}
        most = items_amount_for(lines, skus)
        if items_amount > most:
            raise RequestUnprocessable(
                "The items amount exceeds the items refunded.",
                field_errors={
                    "sub_total_amount": [
                        f"At most {format_amount(most, bag.currency)} for these quantities (price × quantity)."
                    ]
                },
            )
    try:
        return refund_record(
            bag=bag,
            source=source,
            actor=actor,
            skus=[RefundSkuLine(order_sku_id=line.order_sku_id, quantity=line.quantity) for line in lines],
            sub_total_amount=items_amount if items_amount is not None else (None if lines else 0),
            shipping_amount=shipping_amount,
            tax_amount=tax_amount,
            external_id=reference,
            request_key=request_key,
            reason_code=reason_code,
            reason=(reason or "").strip(),
            user=user,
            enqueue=enqueue,
        )
    except RequestMismatch as exc:
        # A notice names its key `reference` (the service's external_id).
        raise RequestMismatch(
            exc.message,
            field_errors={"reference" if f == "external_id" else f: v for f, v in exc.field_errors.items()},
        ) from None

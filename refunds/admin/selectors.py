"""Reads for the operators' admin only: triage counts, the "needs attention" queryset, the 30-day
chart, what each money-moving step of a refund did, and what the operator's refund notice form
offers and previews. Nothing here writes; the admin's writes all go through refunds.services.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from payments import splits
from payments.models import Recipient, ShopperRefund, Transfer, TransferReversal
from platforms.models import InboundEvent, Merchant, Platform, SfccRefundMode
from refunds.amounts import NOT_COUNTING_STATUSES, bag_refundable_remaining, bag_refunded_parts, bag_totals
from refunds.models import Bag, OrderSku, Refund, RefundSource, RefundStatus, RefundStep
from refunds.selectors import refunds_forwarding_stalled_queryset
from refunds.services import refunds_stuck_queryset
from violet_refunds.money import AmountParts

# Statuses that always need an operator; PROCESSING joins them only once it is stuck.
ATTENTION_STATUSES = (RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED)

# --------------------------------------------------------------------------------------------------
# Triage
# --------------------------------------------------------------------------------------------------


def refunds_needing_attention(queryset: QuerySet[Refund] | None = None, *, now=None) -> QuerySet[Refund]:
    """FAILED, PARTIALLY_COMPLETED, and PROCESSING refunds nobody is working on (the engine's own
    definition of stuck), narrowed from `queryset` (the admin's, with its joins) when given."""
    base = Refund.objects.all() if queryset is None else queryset
    return base & (
        Refund.objects.filter(status__in=ATTENTION_STATUSES)
        | refunds_stuck_queryset(now)
        | refunds_forwarding_stalled_queryset()
    )


def refunds_stuck(queryset: QuerySet[Refund] | None = None, *, now=None) -> QuerySet[Refund]:
    base = Refund.objects.all() if queryset is None else queryset
    return base & refunds_stuck_queryset(now)


@dataclass(frozen=True)
class TriageCounts:
    failed: int
    partially_completed: int
    stuck: int
    inbound_failed_last_24h: int
    inbound_awaiting_order: int = 0
    found_by_parity_last_7d: int = 0
    # Channel refunds whose platform stayed unreachable (refunds.services.forwarding): an operator acts.
    forwarding_stalled: int = 0

    @property
    def needing_attention(self) -> int:
        return self.failed + self.partially_completed + self.stuck + self.forwarding_stalled


def triage_counts(*, now=None) -> TriageCounts:
    """Four small counts, each answered from an index (status, date) rather than one pass over every
    refund, which matters once the table holds millions of completed rows."""
    now = now or timezone.now()
    return TriageCounts(
        failed=Refund.objects.filter(status=RefundStatus.FAILED).count(),
        partially_completed=Refund.objects.filter(status=RefundStatus.PARTIALLY_COMPLETED).count(),
        stuck=refunds_stuck_queryset(now).count(),
        forwarding_stalled=refunds_forwarding_stalled_queryset().count(),
        inbound_failed_last_24h=InboundEvent.objects.filter(
            status=InboundEvent.Status.FAILED, date_created__gte=now - dt.timedelta(hours=24)
        ).count(),
        inbound_awaiting_order=InboundEvent.objects.filter(status=InboundEvent.Status.AWAITING_ORDER).count(),
        # Refunds no webhook or poll reported, found by reading the platform (platforms.parity).
        found_by_parity_last_7d=Refund.objects.filter(
            source=RefundSource.PARITY_CHECK, date_created__gte=now - dt.timedelta(days=7)
        ).count(),
    )


@dataclass(frozen=True)
class DayOfRefunds:
    day: dt.date
    counts: dict[str, int]  # status -> refunds created that day

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def refunds_per_day(*, days: int = 30, now=None) -> list[DayOfRefunds]:
    """Refunds created per day (in the site's time zone) by status, oldest day first, every day of
    the window present even when nothing happened on it."""
    now = timezone.localtime(now or timezone.now())
    first_day = now.date() - dt.timedelta(days=days - 1)
    start = timezone.make_aware(dt.datetime.combine(first_day, dt.time.min), now.tzinfo)
    rows = (
        Refund.objects.filter(date_created__gte=start)
        .annotate(day=TruncDate("date_created", tzinfo=now.tzinfo))
        .values("day", "status")
        .annotate(refunds=Count("id"))
        .order_by()
    )
    by_day: dict[dt.date, dict[str, int]] = {first_day + dt.timedelta(days=n): {} for n in range(days)}
    for row in rows:
        if row["day"] in by_day:
            by_day[row["day"]][row["status"]] = row["refunds"]
    return [DayOfRefunds(day=day, counts=counts) for day, counts in by_day.items()]


# --------------------------------------------------------------------------------------------------
# What each step of a refund did (reads relations the admin prefetches: no query per row)
# --------------------------------------------------------------------------------------------------


class StepState:
    DONE = "done"
    FAILED = "failed"
    IN_FLIGHT = "in-flight"  # sent to Stripe at least once, outcome not recorded yet
    NOT_STARTED = "not-started"
    NOT_NEEDED = "not-needed"


@dataclass(frozen=True)
class StepOutcome:
    step: str  # RefundStep value
    label: str
    state: str  # StepState value
    amount: int | None = None
    currency: str = ""
    gateway_id: str = ""
    detail: str = ""

    @property
    def money_moved(self) -> bool:
        return self.state == StepState.DONE


_STEP_LABELS = dict(RefundStep.choices)


def _row_state(status: str, attempts: int, *, done: str, failed: tuple[str, ...]) -> str:
    if status == done:
        return StepState.DONE
    if status in failed:
        return StepState.FAILED
    return StepState.IN_FLIGHT if attempts else StepState.NOT_STARTED


def refund_step_outcomes(refund: Refund) -> list[StepOutcome]:
    """Merchant reversal, channel reversal and shopper refund, each with what happened to it.

    Reads `refund.transfer_reversals` (with `transfer`) and `refund.shopper_refund`; prefetch or
    select them when calling this for many refunds. The engine creates all step rows at once, so a
    refund with a shopper-refund row but no reversal for a transfer had nothing to reverse there.
    """
    try:
        shopper = refund.shopper_refund
    except ObjectDoesNotExist:
        shopper = None
    planned = shopper is not None
    reversals = {reversal.transfer.recipient: reversal for reversal in refund.transfer_reversals.all()}
    outcomes = []
    for step, recipient in (
        (RefundStep.MERCHANT_REVERSAL, Recipient.MERCHANT),
        (RefundStep.CHANNEL_REVERSAL, Recipient.DEVELOPER),
    ):
        reversal = reversals.get(recipient)
        if reversal is None:
            outcomes.append(
                StepOutcome(
                    step=step,
                    label=_STEP_LABELS[step],
                    state=StepState.NOT_NEEDED if planned else StepState.NOT_STARTED,
                    detail="nothing to reverse" if planned else "not planned yet",
                )
            )
            continue
        outcomes.append(
            StepOutcome(
                step=step,
                label=_STEP_LABELS[step],
                state=_row_state(
                    reversal.status,
                    reversal.attempts,
                    done=TransferReversal.Status.COMPLETE,
                    failed=(TransferReversal.Status.FAILED,),
                ),
                amount=reversal.amount,
                currency=reversal.currency,
                gateway_id=reversal.gateway_reversal_id or "",
                detail=reversal.error_message or reversal.error_code,
            )
        )
    step = RefundStep.SHOPPER_REFUND
    if shopper is None:
        outcomes.append(
            StepOutcome(step=step, label=_STEP_LABELS[step], state=StepState.NOT_STARTED, detail="not planned yet")
        )
    else:
        outcomes.append(
            StepOutcome(
                step=step,
                label=_STEP_LABELS[step],
                state=_row_state(
                    shopper.status,
                    shopper.attempts,
                    done=ShopperRefund.Status.SUCCEEDED,
                    failed=(ShopperRefund.Status.FAILED, ShopperRefund.Status.CANCELED),
                ),
                amount=shopper.amount,
                currency=shopper.currency,
                gateway_id=shopper.gateway_refund_id or "",
                detail=shopper.error_message or shopper.failure_reason or shopper.error_code,
            )
        )
    return outcomes


# --------------------------------------------------------------------------------------------------
# The operator's refund notice (SFCC Option 2, and platforms that cannot report refunds)
# --------------------------------------------------------------------------------------------------


def _platforms_without_refund_signal() -> list[str]:
    # Imported here: the adapters import the refund domain, and this list is only needed per request.
    from platforms.adapters import ADAPTERS

    return [platform for platform in Platform.values if platform not in ADAPTERS]


def merchants_for_operator_notice() -> QuerySet[Merchant]:
    """Merchants whose refunds reach us only when someone tells us: SFCC merchants on Option 2, and
    merchants on a platform we have no adapter for."""
    return Merchant.objects.filter(
        Q(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE)
        | Q(platform__in=_platforms_without_refund_signal())
    ).order_by("name", "pk")


def merchant_accepts_operator_notice(merchant: Merchant) -> bool:
    return merchants_for_operator_notice().filter(pk=merchant.pk).exists()


def bag_for_operator_notice(*, merchant: Merchant, reference: str) -> Bag | None:
    """The merchant's bag named by its platform order id, or by our bag id."""
    reference = (reference or "").strip()
    if not reference:
        return None
    bags = Bag.objects.select_related("order", "merchant").filter(merchant=merchant)
    bag = bags.filter(external_id=reference).first()
    if bag is None and reference.isdigit():
        bag = bags.filter(pk=int(reference)).first()
    return bag


@dataclass(frozen=True)
class SkuLeft:
    sku: OrderSku
    remaining: int


def bag_skus_left(bag: Bag) -> list[SkuLeft]:
    remaining = bag_refundable_remaining(bag).skus
    return [SkuLeft(sku=sku, remaining=remaining.get(sku.pk, 0)) for sku in OrderSku.objects.filter(bag=bag)]


@dataclass(frozen=True)
class SplitPreview:
    """What a refund of `parts` would pull back from each transfer, as things stand now."""

    merchant: splits.LegReversal | None
    channel: splits.LegReversal | None
    merchant_currency: str = ""
    channel_currency: str = ""
    commission_at_checkout: int = 0
    problem: str = ""


def refund_split_preview(*, bag: Bag, parts: AmountParts) -> SplitPreview:
    """payments.splits applied to the bag's transfers and every refund already on the bag. The engine
    fixes the split when processing starts; until then other refunds may still change it."""
    transfers = {
        transfer.recipient: transfer
        for transfer in Transfer.objects.filter(bag=bag).exclude(
            status__in=[Transfer.Status.FAILED, Transfer.Status.BYPASSED, Transfer.Status.PENDING]
        )
    }
    reversed_before = {
        row["transfer_id"]: row
        for row in TransferReversal.objects.filter(transfer__in=transfers.values())
        .exclude(refund__status__in=NOT_COUNTING_STATUSES)
        .values("transfer_id")
        .annotate(amount=Sum("amount"), bag_amount=Sum("bag_amount"))
    }

    def leg(recipient: str) -> splits.TransferLeg | None:
        transfer = transfers.get(recipient)
        if transfer is None:
            return None
        before: Mapping[str, Any] = reversed_before.get(transfer.pk, {})
        return splits.TransferLeg(
            amount=transfer.amount,
            bag_amount=transfer.bag_amount,
            reversed_before=before.get("amount") or 0,
            reversed_before_bag=before.get("bag_amount") or 0,
        )

    totals = bag_totals(bag)
    merchant_currency = transfers[Recipient.MERCHANT].currency if Recipient.MERCHANT in transfers else ""
    channel_currency = transfers[Recipient.DEVELOPER].currency if Recipient.DEVELOPER in transfers else ""
    try:
        plan = splits.plan_reversals(
            bag=totals,
            refunded_before=bag_refunded_parts(bag),
            this_refund=parts,
            merchant=leg(Recipient.MERCHANT),
            channel=leg(Recipient.DEVELOPER),
        )
    except (ValueError, TypeError) as exc:
        return SplitPreview(
            merchant=None,
            channel=None,
            merchant_currency=merchant_currency,
            channel_currency=channel_currency,
            problem=str(exc),
        )
    return SplitPreview(
        merchant=plan.merchant,
        channel=plan.channel,
        merchant_currency=merchant_currency,
        channel_currency=channel_currency,
        commission_at_checkout=splits.commission_amount(totals),
    )

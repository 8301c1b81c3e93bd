"""How a refund divides into merchant and channel transfer reversals: pure functions, exact arithmetic.

At checkout a bag's total went out as (up to) two Stripe Connect transfers: the channel's commission
and the merchant's payout (total - commission). Commission applies to the sub_total only, so a refund
pulls back from the channel its commission share of the refunded sub_total, and everything else (the
rest of the sub_total, all shipping and tax) from the merchant.

Every reversal is computed cumulatively: what should be reversed once this refund is done (the target
for all refunds so far), minus what earlier refunds already reversed. Rounding therefore never drifts
across partial refunds, and the refund that completes the bag reverses exactly what is left of each
transfer. Arithmetic is on Fractions, rounding is half-up, and floats never appear.

Invalid input raises ValueError (TypeError for a non-integer amount); callers turn it into a RefundError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from violet_refunds.money import AmountParts, check_minor_units

_PART_NAMES = ("sub_total", "shipping", "tax")


def _round_half_up(value: Fraction) -> int:
    """The nearest integer; an exact half rounds up. Only ever applied to non-negative values."""
    return math.floor(value + Fraction(1, 2))


@dataclass(frozen=True)
class BagTotals:
    """The bag's totals as placed, in minor units of the bag currency; commission_rate in percent."""

    sub_total: int
    shipping_total: int
    tax_total: int
    discount_total: int
    commission_rate: Decimal

    def __post_init__(self):
        for name in ("sub_total", "shipping_total", "tax_total", "discount_total"):
            check_minor_units(f"BagTotals.{name}", getattr(self, name))
        if self.discount_total > self.sub_total:
            raise ValueError(
                f"discount_total {self.discount_total} exceeds sub_total {self.sub_total}: "
                "the commission base would be negative"
            )
        rate = self.commission_rate
        if not isinstance(rate, Decimal | int) or isinstance(rate, bool):
            raise TypeError(f"commission_rate must be a Decimal percent, got {type(rate).__name__}")
        if isinstance(rate, Decimal) and not rate.is_finite():
            raise ValueError(f"commission_rate must be a finite percent, got {rate}")
        if not 0 <= rate <= 100:
            raise ValueError(f"commission_rate must be within 0..100 percent, got {rate}")

    @property
    def net_sub_total(self) -> int:
        # Assumption: Violet documents `commission = sub_total × rate`; we take the bag's discounts
        # off first, because the shopper never paid the discounted part, so neither the channel's
        # commission nor a refund can be based on it.
        return self.sub_total - self.discount_total

    @property
    def total(self) -> int:
        return self.net_sub_total + self.shipping_total + self.tax_total

    @property
    def refundable(self) -> AmountParts:
        return AmountParts(sub_total=self.net_sub_total, shipping=self.shipping_total, tax=self.tax_total)


def commission_amount(bag: BagTotals) -> int:
    """The channel's transfer at checkout, bag currency: net sub_total × rate, rounded half-up."""
    return _round_half_up(Fraction(bag.net_sub_total) * Fraction(bag.commission_rate) / 100)


def split_amount_pro_rata(amount: int, remaining: AmountParts) -> AmountParts:
    """Divide an amount-only refund across what is left of sub_total, shipping and tax.

    Largest remainder: each part gets the floor of its exact share, then the few cents still
    missing go to the parts with the largest fractional shares (ties: sub_total, shipping, tax).
    The parts add up to `amount` exactly and none exceeds its remaining part.
    """
    check_minor_units("amount", amount)
    if amount > remaining.total:
        raise ValueError(f"amount {amount} exceeds what is left to refund ({remaining.total})")
    if amount == remaining.total:
        return remaining
    weights = [getattr(remaining, name) for name in _PART_NAMES]
    shares = [Fraction(amount * weight, remaining.total) for weight in weights]
    parts = [math.floor(share) for share in shares]
    missing = amount - sum(parts)
    # Fewer parts are missing a cent than have a fractional share, so no part passes its remaining.
    by_remainder = sorted(range(len(parts)), key=lambda i: (parts[i] - shares[i], i))
    for index in by_remainder[:missing]:
        parts[index] += 1
    return AmountParts(*parts)


@dataclass(frozen=True)
class TransferLeg:
    """One checkout transfer and what earlier refunds already reversed (or planned to) from it.

    `amount`/`reversed_before` are in the transfer's currency; `bag_amount`/`reversed_before_bag`
    are the same in the bag's currency.
    """

    amount: int
    bag_amount: int
    reversed_before: int
    reversed_before_bag: int

    def __post_init__(self):
        for name in ("amount", "bag_amount", "reversed_before", "reversed_before_bag"):
            check_minor_units(f"TransferLeg.{name}", getattr(self, name))
        if self.reversed_before > self.amount or self.reversed_before_bag > self.bag_amount:
            raise ValueError("a transfer cannot have reversed more than it moved")
        if self.bag_amount == 0 and self.amount > 0:
            raise ValueError("a transfer with a bag_amount of 0 has no exchange ratio to reverse by")


@dataclass(frozen=True)
class LegReversal:
    """This refund's reversal of one transfer: in the transfer's currency and in the bag's."""

    amount: int
    bag_amount: int


@dataclass(frozen=True)
class ReversalPlan:
    """What this refund reverses per transfer; None where the bag has no such transfer."""

    merchant: LegReversal | None
    channel: LegReversal | None


def convert_cumulative(target_bag: int, *, transfer_amount: int, transfer_bag_amount: int) -> int:
    """A cumulative reversal target in bag currency, in the transfer's currency.

    Uses the transfer's own amount/bag_amount ratio (the rate it was actually sent at), rounded
    half-up, so the full bag_amount converts to exactly the transfer's amount.
    """
    check_minor_units("target_bag", target_bag)
    check_minor_units("transfer_amount", transfer_amount)
    check_minor_units("transfer_bag_amount", transfer_bag_amount)
    if target_bag > transfer_bag_amount:
        raise ValueError(f"target {target_bag} exceeds the transfer's bag_amount {transfer_bag_amount}")
    if transfer_bag_amount == 0:
        if transfer_amount:
            raise ValueError("a transfer with a bag_amount of 0 has no exchange ratio to convert by")
        return 0
    return _round_half_up(Fraction(target_bag * transfer_amount, transfer_bag_amount))


def _reversal_towards(leg: TransferLeg, target_bag: int) -> LegReversal:
    # This refund reverses what the cumulative target adds to what was already reversed. Targets
    # never pass the transfer (convert_cumulative refuses to), so neither does this; floored at 0
    # because earlier reversals (an operator's, say) may already have gone past the target.
    target_amount = convert_cumulative(target_bag, transfer_amount=leg.amount, transfer_bag_amount=leg.bag_amount)
    return LegReversal(
        amount=max(0, target_amount - leg.reversed_before),
        bag_amount=max(0, target_bag - leg.reversed_before_bag),
    )


def plan_reversals(
    *,
    bag: BagTotals,
    refunded_before: AmountParts,
    this_refund: AmountParts,
    merchant: TransferLeg | None,
    channel: TransferLeg | None,
) -> ReversalPlan:
    """What this refund reverses from the merchant's and the channel's transfers.

    Cumulative targets (bag currency) for all refunds up to and including this one:
    channel = its transfer × refunded net sub_total / net sub_total (half-up, at most the transfer);
    merchant = the rest of the refunded total (at most the transfer).
    Raises ValueError when the refunds together return more of any part than the bag holds.
    """
    cumulative = refunded_before + this_refund
    refundable = bag.refundable
    for name in _PART_NAMES:
        refunded, held = getattr(cumulative, name), getattr(refundable, name)
        if refunded > held:
            raise ValueError(f"refunds would return {refunded} of the bag's {name}, which holds only {held}")

    channel_target = 0
    if channel is not None and bag.net_sub_total:
        # At most the whole transfer: cumulative.sub_total <= net_sub_total was checked above.
        channel_share = Fraction(channel.bag_amount * cumulative.sub_total, bag.net_sub_total)
        channel_target = _round_half_up(channel_share)
    merchant_target = 0
    if merchant is not None:
        # The rest of what the shopper got back, but never more than the merchant was sent, and
        # nothing when a channel transfer larger than the net sub_total already covers it.
        merchant_target = max(0, min(cumulative.total - channel_target, merchant.bag_amount))

    return ReversalPlan(
        merchant=None if merchant is None else _reversal_towards(merchant, merchant_target),
        channel=None if channel is None else _reversal_towards(channel, channel_target),
    )

"""Reversal plans as the refund engine builds them, for the payments.splits tests: the transfers checkout
sent, each refund planned in turn with what was reversed before, one full refund, the sums.
"""

import math
from dataclasses import replace
from fractions import Fraction

from payments.splits import (
    AmountParts,
    BagTotals,
    LegReversal,
    ReversalPlan,
    TransferLeg,
    commission_amount,
    plan_reversals,
)


def fresh_leg(bag_amount: int, ratio: Fraction | None = None) -> TransferLeg:
    """A transfer nothing was reversed from; with a ratio, sent in another currency."""
    amount = bag_amount if ratio is None else math.floor(bag_amount * ratio)
    return TransferLeg(amount=amount, bag_amount=bag_amount, reversed_before=0, reversed_before_bag=0)


def checkout_transfers(bag: BagTotals, ratio: Fraction | None = None) -> tuple[TransferLeg, TransferLeg]:
    """The merchant's and the channel's transfers as checkout sent them."""
    commission = commission_amount(bag)
    return fresh_leg(bag.total - commission, ratio), fresh_leg(commission, ratio)


def after(leg: TransferLeg | None, reversal: LegReversal | None) -> TransferLeg | None:
    if leg is None:
        return None
    return replace(
        leg,
        reversed_before=leg.reversed_before + reversal.amount,
        reversed_before_bag=leg.reversed_before_bag + reversal.bag_amount,
    )


def refund_in_sequence(bag, refunds, merchant, channel) -> list[ReversalPlan]:
    """Plan each refund in turn, feeding what was reversed into the next call."""
    refunded = AmountParts.ZERO
    plans = []
    for refund in refunds:
        plan = plan_reversals(bag=bag, refunded_before=refunded, this_refund=refund, merchant=merchant, channel=channel)
        plans.append(plan)
        refunded += refund
        merchant, channel = after(merchant, plan.merchant), after(channel, plan.channel)
    return plans


def full_refund(bag, merchant, channel) -> ReversalPlan:
    return plan_reversals(
        bag=bag,
        refunded_before=AmountParts.ZERO,
        this_refund=bag.refundable,
        merchant=merchant,
        channel=channel,
    )


def total_reversed(plans: list[ReversalPlan], leg: str) -> LegReversal | None:
    reversals = [getattr(plan, leg) for plan in plans]
    if reversals[0] is None:
        return None
    return LegReversal(amount=sum(r.amount for r in reversals), bag_amount=sum(r.bag_amount for r in reversals))

"""payments.splits: how refunds divide into merchant and channel transfer reversals, property tests.

They prove the invariants the refund engine relies on; test_splits_examples.py pins concrete cents.
"""

import itertools
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from payments.splits import (
    AmountParts,
    BagTotals,
    LegReversal,
    TransferLeg,
    commission_amount,
    plan_reversals,
    split_amount_pro_rata,
)
from tests.payments.reversal_plans import checkout_transfers, fresh_leg, full_refund, refund_in_sequence, total_reversed

# ---------------------------------------------------------------------------------------------
# Strategies

rates = st.integers(0, 10_000).map(lambda hundredths: Decimal(hundredths).scaleb(-2))  # 0.00 .. 100.00
# How many transfer-currency units one bag-currency unit is worth (JPY <-> USD is about 150x).
exchange_ratios = st.fractions(min_value=Fraction(1, 200), max_value=200, max_denominator=10_000)


@st.composite
def bags(draw):
    sub_total = draw(st.integers(0, 5_000_000))
    return BagTotals(
        sub_total=sub_total,
        shipping_total=draw(st.integers(0, 50_000)),
        tax_total=draw(st.integers(0, 100_000)),
        discount_total=draw(st.one_of(st.just(0), st.integers(0, sub_total))),
        commission_rate=draw(rates),
    )


@st.composite
def refund_parts(draw, within: AmountParts | None = None):
    if within is None:
        return AmountParts(*(draw(st.integers(0, 1_000_000)) for _ in range(3)))
    return AmountParts(
        sub_total=draw(st.integers(0, within.sub_total)),
        shipping=draw(st.integers(0, within.shipping)),
        tax=draw(st.integers(0, within.tax)),
    )


@st.composite
def partitions(draw, whole: AmountParts):
    """1..8 refunds whose parts add up to `whole`, part by part (zero-sized refunds included)."""
    count = draw(st.integers(1, 8))

    def cut(total):
        cuts = sorted(draw(st.lists(st.integers(0, total), min_size=count - 1, max_size=count - 1)))
        return [high - low for low, high in itertools.pairwise([0, *cuts, total])]

    columns = (cut(whole.sub_total), cut(whole.shipping), cut(whole.tax))
    return [AmountParts(*row) for row in zip(*columns, strict=True)]


# ---------------------------------------------------------------------------------------------
# Properties


@settings(deadline=None)
@given(remaining=refund_parts(), data=st.data())
def test_pro_rata_split_adds_up_to_the_cent_and_stays_within_remaining(remaining, data):
    amount = data.draw(st.integers(0, remaining.total))

    split = split_amount_pro_rata(amount, remaining)

    assert split.total == amount
    for name in ("sub_total", "shipping", "tax"):
        part, left = getattr(split, name), getattr(remaining, name)
        assert 0 <= part <= left
        # Largest remainder: each part is its exact proportional share, rounded by less than a cent.
        assert abs(part - Fraction(amount * left, remaining.total or 1)) < 1


@settings(deadline=None)
@given(bag=bags())
def test_commission_is_the_rate_share_of_the_net_sub_total(bag):
    commission = commission_amount(bag)

    exact = Fraction(bag.net_sub_total) * Fraction(bag.commission_rate) / 100
    assert exact - Fraction(1, 2) < commission <= exact + Fraction(1, 2)
    assert 0 <= commission <= bag.net_sub_total


@settings(deadline=None)
@given(bag=bags(), data=st.data())
def test_reversals_are_never_negative_nor_more_than_a_transfer_has_left(bag, data):
    refunded_before = data.draw(refund_parts(within=bag.refundable))
    left_to_refund = AmountParts(
        sub_total=bag.refundable.sub_total - refunded_before.sub_total,
        shipping=bag.refundable.shipping - refunded_before.shipping,
        tax=bag.refundable.tax - refunded_before.tax,
    )
    this_refund = data.draw(refund_parts(within=left_to_refund))

    def any_leg():
        # Any transfer at all, any history: amounts need not match the bag.
        bag_amount = data.draw(st.integers(0, 2 * bag.total + 10))
        amount = data.draw(st.integers(0, 10 * bag_amount))
        return TransferLeg(
            amount=amount,
            bag_amount=bag_amount,
            reversed_before=data.draw(st.integers(0, amount)),
            reversed_before_bag=data.draw(st.integers(0, bag_amount)),
        )

    merchant = any_leg() if data.draw(st.booleans(), label="has merchant transfer") else None
    channel = any_leg() if data.draw(st.booleans(), label="has channel transfer") else None

    plan = plan_reversals(
        bag=bag, refunded_before=refunded_before, this_refund=this_refund, merchant=merchant, channel=channel
    )

    for leg, reversal in ((merchant, plan.merchant), (channel, plan.channel)):
        assert (leg is None) == (reversal is None)
        if leg is not None:
            assert 0 <= reversal.amount <= leg.amount - leg.reversed_before
            assert 0 <= reversal.bag_amount <= leg.bag_amount - leg.reversed_before_bag


@settings(deadline=None)
@given(bag=bags())
def test_single_full_refund_reverses_both_transfers_exactly(bag):
    merchant, channel = checkout_transfers(bag)

    plan = full_refund(bag, merchant, channel)

    assert plan.merchant == LegReversal(amount=merchant.amount, bag_amount=merchant.bag_amount)
    assert plan.channel == LegReversal(amount=channel.amount, bag_amount=channel.bag_amount)
    assert plan.merchant.bag_amount + plan.channel.bag_amount == bag.total


@settings(deadline=None)
@given(bag=bags(), ratio=exchange_ratios)
def test_single_full_refund_in_another_currency_reverses_each_transfer_amount(bag, ratio):
    merchant, channel = checkout_transfers(bag, ratio)

    plan = full_refund(bag, merchant, channel)

    assert plan.merchant == LegReversal(amount=merchant.amount, bag_amount=merchant.bag_amount)
    assert plan.channel == LegReversal(amount=channel.amount, bag_amount=channel.bag_amount)


@settings(deadline=None)
@given(
    bag=bags(),
    ratio=st.one_of(st.none(), exchange_ratios),
    with_channel=st.booleans(),
    data=st.data(),
)
def test_any_sequence_of_partial_refunds_reverses_what_one_full_refund_reverses(bag, ratio, with_channel, data):
    if with_channel:
        merchant, channel = checkout_transfers(bag, ratio)
    else:  # No commission transfer: the merchant received the whole bag.
        merchant, channel = fresh_leg(bag.total, ratio), None
    refunds = data.draw(partitions(bag.refundable))

    plans = refund_in_sequence(bag, refunds, merchant, channel)

    full = full_refund(bag, merchant, channel)
    assert total_reversed(plans, "merchant") == full.merchant
    assert total_reversed(plans, "channel") == full.channel


@settings(deadline=None)
@given(bag=bags(), ratio=st.one_of(st.none(), exchange_ratios), data=st.data())
def test_each_refund_reverses_its_total_when_the_transfers_add_up_to_the_bag(bag, ratio, data):
    # Any channel share up to the net sub_total (so the channel never holds more than commission
    # can take back) and the merchant holding the rest: no target is ever capped.
    channel_bag_amount = data.draw(st.integers(0, bag.net_sub_total))
    merchant = fresh_leg(bag.total - channel_bag_amount, ratio)
    channel = fresh_leg(channel_bag_amount, ratio)
    refunds = data.draw(partitions(bag.refundable))

    plans = refund_in_sequence(bag, refunds, merchant, channel)

    refunded_sub_total = channel_reversed = 0
    for refund, plan in zip(refunds, plans, strict=True):
        assert plan.merchant.bag_amount + plan.channel.bag_amount == refund.total
        # The channel's cumulative reversal is its half-up share of the refunded sub_total.
        refunded_sub_total += refund.sub_total
        channel_reversed += plan.channel.bag_amount
        exact_share = Fraction(channel_bag_amount * refunded_sub_total, bag.net_sub_total or 1)
        assert exact_share - Fraction(1, 2) < channel_reversed <= exact_share + Fraction(1, 2)


def test_commission_matches_the_spec_worked_example():
    # docs/violet-api.md, Money: subtotal $90, ship $5, tax $5, rate 20% -> commission $18, merchant $82.
    bag = BagTotals(sub_total=9000, shipping_total=500, tax_total=500, discount_total=0, commission_rate=Decimal("20"))
    merchant, channel = checkout_transfers(bag)

    assert commission_amount(bag) == 1800
    assert (merchant.bag_amount, channel.bag_amount) == (8200, 1800)

    half_the_goods = plan_reversals(
        bag=bag,
        refunded_before=AmountParts.ZERO,
        this_refund=AmountParts(sub_total=4500, shipping=0, tax=250),
        merchant=merchant,
        channel=channel,
    )
    assert half_the_goods.channel == LegReversal(amount=900, bag_amount=900)
    assert half_the_goods.merchant == LegReversal(amount=3850, bag_amount=3850)

    everything = full_refund(bag, merchant, channel)
    assert everything.channel == LegReversal(amount=1800, bag_amount=1800)
    assert everything.merchant == LegReversal(amount=8200, bag_amount=8200)

"""payments.splits: how refunds divide into merchant and channel transfer reversals.

Property tests prove the invariants the refund engine relies on; the examples pin concrete cents.
"""

import itertools
import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.splits import (
    AmountParts,
    BagTotals,
    LegReversal,
    ReversalPlan,
    TransferLeg,
    commission_amount,
    convert_cumulative,
    plan_reversals,
    split_amount_pro_rata,
)

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
    # spec/violet-api.md 6: subtotal $90, ship $5, tax $5, rate 20% -> commission $18, merchant $82.
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


# ---------------------------------------------------------------------------------------------
# Examples with concrete cents


def odd_bag(**overrides) -> BagTotals:
    values = {
        "sub_total": 333,
        "shipping_total": 250,
        "tax_total": 27,
        "discount_total": 0,
        "commission_rate": Decimal("12.5"),
    }
    return BagTotals(**(values | overrides))


def test_commission_rounds_half_up_on_odd_cents():
    assert commission_amount(odd_bag()) == 42  # 333 × 12.5% = 41.625
    assert commission_amount(odd_bag(sub_total=4)) == 1  # 0.5: half-up, where banker's would give 0
    assert commission_amount(odd_bag(sub_total=5, commission_rate=Decimal("10"))) == 1  # 0.5
    assert commission_amount(odd_bag(sub_total=3, commission_rate=Decimal("10"))) == 0  # 0.3
    assert commission_amount(odd_bag(commission_rate=Decimal("0"))) == 0
    assert commission_amount(odd_bag(commission_rate=Decimal("100"))) == 333


def test_discount_comes_off_the_sub_total_before_commission():
    bag = BagTotals(
        sub_total=10_000, shipping_total=800, tax_total=0, discount_total=1_000, commission_rate=Decimal("10")
    )

    assert commission_amount(bag) == 900
    assert bag.net_sub_total == 9_000
    assert bag.total == 9_800
    assert bag.refundable == AmountParts(sub_total=9_000, shipping=800, tax=0)


def test_partial_refunds_with_odd_cents_reverse_commission_without_drift():
    bag = odd_bag()  # commission 42, merchant 333 + 250 + 27 - 42 = 568
    merchant, channel = checkout_transfers(bag)
    refunds = [
        AmountParts(sub_total=100, shipping=0, tax=0),  # channel target 42 × 100/333 = 12.61 -> 13
        AmountParts(sub_total=100, shipping=250, tax=0),  # 42 × 200/333 = 25.23 -> 25, so 12 now
        AmountParts(sub_total=133, shipping=0, tax=27),  # what is left: 42 - 25 = 17
    ]

    plans = refund_in_sequence(bag, refunds, merchant, channel)

    assert [plan.channel.bag_amount for plan in plans] == [13, 12, 17]
    assert [plan.merchant.bag_amount for plan in plans] == [87, 338, 143]
    assert [plan.channel.amount for plan in plans] == [13, 12, 17]
    assert [plan.merchant.amount for plan in plans] == [87, 338, 143]


def test_an_exact_half_of_a_cent_goes_to_the_channel_first():
    bag = BagTotals(sub_total=2, shipping_total=0, tax_total=0, discount_total=0, commission_rate=Decimal("50"))
    merchant, channel = checkout_transfers(bag)  # 1 cent each

    plans = refund_in_sequence(bag, [AmountParts(1, 0, 0), AmountParts(1, 0, 0)], merchant, channel)

    assert [plan.channel for plan in plans] == [LegReversal(1, 1), LegReversal(0, 0)]
    assert [plan.merchant for plan in plans] == [LegReversal(0, 0), LegReversal(1, 1)]


def test_a_transfer_in_another_currency_converts_cumulatively():
    # A EUR bag whose merchant was paid in USD at 1.087 (1000 EUR cents -> 1087 USD cents).
    bag = BagTotals(sub_total=800, shipping_total=200, tax_total=0, discount_total=0, commission_rate=Decimal("0"))
    merchant = TransferLeg(amount=1087, bag_amount=1000, reversed_before=0, reversed_before_bag=0)
    refunds = [AmountParts(333, 0, 0), AmountParts(333, 0, 0), AmountParts(134, 200, 0)]

    plans = refund_in_sequence(bag, refunds, merchant, channel=None)

    # Cumulative 333 -> 361.97 -> 362; 666 -> 723.94 -> 724; 1000 -> exactly 1087.
    assert [plan.merchant for plan in plans] == [
        LegReversal(362, 333),
        LegReversal(362, 333),
        LegReversal(363, 334),
    ]
    assert all(plan.channel is None for plan in plans)
    assert convert_cumulative(1000, transfer_amount=1087, transfer_bag_amount=1000) == 1087
    assert convert_cumulative(0, transfer_amount=1087, transfer_bag_amount=1000) == 0
    assert convert_cumulative(1, transfer_amount=3, transfer_bag_amount=2) == 2  # 1.5, half-up


def test_without_a_channel_transfer_the_merchant_returns_the_sub_total_too():
    bag = odd_bag()
    merchant = fresh_leg(bag.total)

    plan = plan_reversals(
        bag=bag,
        refunded_before=AmountParts.ZERO,
        this_refund=AmountParts(sub_total=100, shipping=10, tax=1),
        merchant=merchant,
        channel=None,
    )

    assert plan == ReversalPlan(merchant=LegReversal(111, 111), channel=None)


def test_never_reverses_more_than_a_transfer_has_left():
    bag = odd_bag()
    merchant, channel = checkout_transfers(bag)
    # An operator already pulled 560 of the merchant's 568 back by hand.
    merchant = replace(merchant, reversed_before=560, reversed_before_bag=560)

    plan = full_refund(bag, merchant, channel)

    assert plan.merchant == LegReversal(amount=8, bag_amount=8)
    assert plan.channel == LegReversal(amount=42, bag_amount=42)


def test_refund_parts_add_part_by_part():
    parts = AmountParts(sub_total=100, shipping=20, tax=3) + AmountParts(sub_total=1, shipping=2, tax=3)

    assert parts == AmountParts(sub_total=101, shipping=22, tax=6)
    assert parts.total == 129
    assert AmountParts.ZERO + parts == parts
    assert AmountParts.ZERO.total == 0


def test_pro_rata_split_examples():
    remaining = AmountParts(sub_total=333, shipping=250, tax=27)

    assert split_amount_pro_rata(0, remaining) == AmountParts.ZERO
    assert split_amount_pro_rata(610, remaining) == remaining
    # Shares of 100: 54.59, 40.98, 4.43 -> floors 54 + 40 + 4 = 98; the two cents go to .98 and .59.
    assert split_amount_pro_rata(100, remaining) == AmountParts(sub_total=55, shipping=41, tax=4)
    assert split_amount_pro_rata(0, AmountParts.ZERO) == AmountParts.ZERO


@pytest.mark.parametrize("amount", [-1, 611])
def test_pro_rata_split_rejects_an_amount_outside_what_is_left(amount):
    with pytest.raises(ValueError):
        split_amount_pro_rata(amount, AmountParts(sub_total=333, shipping=250, tax=27))


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda: AmountParts(sub_total=-1, shipping=0, tax=0), id="negative part"),
        pytest.param(lambda: odd_bag(discount_total=334), id="discount above sub_total"),
        pytest.param(lambda: odd_bag(commission_rate=Decimal("100.01")), id="rate above 100"),
        pytest.param(lambda: odd_bag(commission_rate=Decimal("-1")), id="negative rate"),
        pytest.param(lambda: odd_bag(commission_rate=Decimal("NaN")), id="rate not a number"),
        pytest.param(lambda: TransferLeg(100, 100, 101, 0), id="reversed more than sent"),
        pytest.param(lambda: TransferLeg(5, 0, 0, 0), id="transfer without a bag amount"),
        pytest.param(
            lambda: convert_cumulative(101, transfer_amount=100, transfer_bag_amount=100),
            id="convert past transfer",
        ),
    ],
)
def test_impossible_input_is_refused(make_input):
    with pytest.raises(ValueError):
        make_input()


@pytest.mark.parametrize(
    ("refunded_before", "this_refund"),
    [
        (AmountParts.ZERO, AmountParts(sub_total=334, shipping=0, tax=0)),
        (AmountParts(sub_total=0, shipping=200, tax=0), AmountParts(sub_total=0, shipping=51, tax=0)),
        (AmountParts(sub_total=333, shipping=250, tax=27), AmountParts(sub_total=0, shipping=0, tax=1)),
    ],
    ids=["sub_total", "shipping across refunds", "anything after a full refund"],
)
def test_refunding_more_than_the_bag_holds_is_refused(refunded_before, this_refund):
    bag = odd_bag()
    merchant, channel = checkout_transfers(bag)

    with pytest.raises(ValueError, match="holds only"):
        plan_reversals(
            bag=bag,
            refunded_before=refunded_before,
            this_refund=this_refund,
            merchant=merchant,
            channel=channel,
        )


def test_amounts_must_be_integer_minor_units():
    with pytest.raises(TypeError):
        AmountParts(sub_total=Decimal("1.5"), shipping=0, tax=0)
    with pytest.raises(TypeError):
        odd_bag(commission_rate=12.5)

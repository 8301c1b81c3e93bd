"""payments.splits: how refunds divide into merchant and channel transfer reversals, examples with concrete
cents (rounding, discounts, currencies, refused input).

The invariants behind them are proven by test_splits_properties.py.
"""

from dataclasses import replace
from decimal import Decimal

import pytest

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
from tests.payments.reversal_plans import checkout_transfers, fresh_leg, full_refund, refund_in_sequence


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

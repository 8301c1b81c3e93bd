"""The one money module: every currency round-trips through format and parse, to the minor unit."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from violet_refunds import money
from violet_refunds.money import AmountInvalid, AmountParts

EVERY_CURRENCY = sorted({*money.CURRENCY_EXPONENTS, "USD", "EUR", "GBP", "CAD"})


@given(amount=st.integers(min_value=0, max_value=10**15), currency=st.sampled_from(EVERY_CURRENCY))
def test_a_formatted_amount_parses_back_to_the_same_minor_units(amount, currency):
    assert money.parse_major(money.format_major(amount, currency), currency) == amount
    shown = money.format_amount(amount, currency)
    number, code = shown.split(" ")
    assert code == currency
    assert money.parse_major(number, currency) == amount
    assert money.decimal_to_minor_units(number, currency) == amount
    assert money.decimal_to_minor_units(Decimal(number), currency) == amount


@given(currency=st.sampled_from(EVERY_CURRENCY))
def test_the_example_in_the_error_message_is_itself_a_valid_amount(currency):
    with pytest.raises(AmountInvalid) as caught:
        money.parse_major("12,50", currency)
    example = str(caught.value).removesuffix(".").rsplit(" ", 1)[-1]
    assert money.parse_major(example, currency) > 0


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("USD", 2), ("usd", 2), ("JPY", 0), ("MGA", 0), ("UYI", 0), ("KWD", 3), ("CLF", 4), ("UYW", 4), ("XYZ", 2)],
)
def test_exponents_follow_iso_4217_and_stripes_zero_decimal_list(currency, exponent):
    assert money.currency_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "USD", "Enter an amount in USD such as 12.50."),
        ("1e3", "USD", "Enter an amount in USD such as 12.50."),
        ("$5", "USD", "Enter an amount in USD such as 12.50."),
        ("-1.00", "USD", "The amount cannot be negative."),
        ("1.005", "USD", "USD amounts have 2 decimal places."),
        ("1.5", "JPY", "JPY amounts have no decimals."),
        ("1.5", "MGA", "MGA amounts have no decimals."),
        ("1.00001", "CLF", "CLF amounts have 4 decimal places."),
        ("1" * 21, "USD", "Enter an amount in USD such as 12.50."),
    ],
)
def test_typed_amounts_are_refused_with_a_message_for_the_person(text, currency, message):
    with pytest.raises(AmountInvalid, match=message.replace(".", r"\.").replace("$", r"\$")):
        money.parse_major(text, currency)


def test_platform_amounts_are_exact_or_rounded_only_when_asked():
    assert money.decimal_to_minor_units("10.50", "USD") == 1050
    assert money.decimal_to_minor_units(None, "USD") == 0
    assert money.decimal_to_minor_units("1.2345", "CLF") == 12345
    assert money.decimal_to_minor_units("10.505", "USD", round_half_up=True) == 1051
    with pytest.raises(AmountInvalid, match="more decimals than USD allows"):
        money.decimal_to_minor_units("10.505", "USD")
    with pytest.raises(AmountInvalid, match="not a finite amount"):
        money.decimal_to_minor_units("NaN", "USD")
    with pytest.raises(TypeError):
        money.decimal_to_minor_units(10.5, "USD")  # type: ignore[arg-type]


def test_amounts_show_with_their_currency_and_nothing_for_none():
    assert money.format_amount(9402, "USD") == "94.02 USD"
    assert money.format_amount(9402, "usd") == "94.02 USD"
    assert money.format_amount(12345, "CLF") == "1.2345 CLF"
    assert money.format_amount(500, "MGA") == "500 MGA"
    assert money.format_amount(None, "USD") == "-"


def test_parts_are_non_negative_integers_and_add_up():
    parts = AmountParts(sub_total=100, shipping=20, tax=3) + AmountParts(sub_total=1)
    assert parts == AmountParts(sub_total=101, shipping=20, tax=3)
    assert parts.total == 124
    assert AmountParts.ZERO.total == 0
    with pytest.raises(ValueError, match="must not be negative"):
        AmountParts(sub_total=-1)
    with pytest.raises(TypeError, match="int of minor units"):
        AmountParts(tax=Decimal("1.5"))  # type: ignore[arg-type]


@given(
    total=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12),
)
def test_a_pro_rata_allocation_adds_up_to_the_cent_and_stays_within_a_unit_of_the_exact_share(total, weights):
    shares = money.allocate_pro_rata(total, weights)
    assert sum(shares) == total
    assert len(shares) == len(weights) and all(share >= 0 for share in shares)
    effective = weights if any(weights) else [1] * len(weights)
    for share, weight in zip(shares, effective, strict=True):
        exact = Fraction(total * weight, sum(effective))
        assert exact - 1 < share < exact + 1
        if weight == 0:
            assert share == 0


def test_a_pro_rata_allocation_gives_left_over_units_to_the_largest_remainders():
    assert money.allocate_pro_rata(2450, [2, 1]) == [1633, 817]
    assert money.allocate_pro_rata(100, [1, 1, 1]) == [34, 33, 33]  # a tie: the earlier share
    assert money.allocate_pro_rata(5, [0, 0]) == [3, 2]
    assert money.allocate_pro_rata(0, []) == []
    with pytest.raises(ValueError):
        money.allocate_pro_rata(1, [])
    with pytest.raises(ValueError):
        money.allocate_pro_rata(10, [1, -1])

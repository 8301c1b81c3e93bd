"""Money: integer minor units plus an ISO 4217 currency code, everywhere.

The one place that knows how many decimals a currency has, how an amount is shown ("94.02 USD"),
how typed or platform-sent decimal text becomes minor units, and the split of a refund into its
parts. Adapters, admin, portal, CSV export and notifications all go through here, so input and
display can never disagree. Never a float: Decimal for text, int for amounts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import ClassVar

# Minor-unit exponents that differ from the usual 2: ISO 4217, plus Stripe's own zero-decimal list
# (https://docs.stripe.com/currencies#zero-decimal). Where the two disagree Stripe wins, because
# Stripe is where the money moves: MGA has 2 decimals in ISO 4217 but is zero-decimal at Stripe.
# ⚠️ ISK, HUF, TWD and UGX are special cases at Stripe (amounts sent with two decimals that must be
# whole); none of them is a platform currency of the network today, so ISO's exponent is kept.
CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
                "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
            ),
            0,
        ),
        **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
        **dict.fromkeys(("CLF", "UYW"), 4),
    }
)  # fmt: skip
DEFAULT_EXPONENT = 2

# A typed amount is at most this many characters ("1e9", "12,50", "$5" are refused anyway).
_TYPED_MAX_LENGTH = 20
_TYPED_AMOUNT = re.compile(r"[0-9]*(\.[0-9]*)?")


def allocate_pro_rata(total: int, weights: Sequence[int]) -> list[int]:
    """`total` minor units divided in proportion to `weights`, in whole minor units that add up to
    exactly `total`: each share is rounded down, and the units left over go one each to the largest
    remainders (the earlier share on a tie). All weights zero: equal shares. 2450 over [2, 1] ->
    [1633, 817]."""
    check_minor_units("total", total)
    for weight in weights:
        check_minor_units("weight", weight)
    if not weights:
        if total:
            raise ValueError(f"Cannot divide {total} over no shares.")
        return []
    if not any(weights):
        weights = [1] * len(weights)
    weight_sum = sum(weights)
    shares = [total * weight // weight_sum for weight in weights]
    remainders = [total * weight % weight_sum for weight in weights]
    left_over = total - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left_over]:
        shares[index] += 1
    return shares


class AmountInvalid(ValueError):
    """Text that is not an amount of the currency; the message is written for the person who typed it."""


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point: 2 for USD, 0 for JPY, 3 for KWD, 4 for CLF."""
    return CURRENCY_EXPONENTS.get((currency or "").upper(), DEFAULT_EXPONENT)


def format_major(amount: int, currency: str) -> str:
    """1250, "USD" -> "12.50"; 1250, "JPY" -> "1250". The number only, as a form shows it."""
    exponent = currency_exponent(currency)
    return f"{Decimal(amount).scaleb(-exponent):.{exponent}f}"


def format_amount(amount: int | None, currency: str) -> str:
    """9402, "USD" -> "94.02 USD"; None -> "-". What every page, export and message shows."""
    if amount is None:
        return "-"
    return f"{format_major(amount, currency)} {(currency or '').upper()}".strip()


def _example(currency: str) -> str:
    exponent = currency_exponent(currency)
    return "12" if exponent == 0 else "12." + "5".ljust(exponent, "0")


def parse_major(text: str, currency: str) -> int:
    """What a person typed ("12.50" for USD) -> minor units (1250). Plain digits with an optional
    decimal point only: no sign, exponent, thousands separator or currency symbol.

    Raises AmountInvalid with a message for the form."""
    code = (currency or "").upper()
    exponent = currency_exponent(code)
    text = (text or "").strip()
    if text.startswith("-") and _TYPED_AMOUNT.fullmatch(text[1:]) and text not in {"-", "-."}:
        raise AmountInvalid("The amount cannot be negative.")
    if len(text) > _TYPED_MAX_LENGTH or text in {"", "."} or not _TYPED_AMOUNT.fullmatch(text):
        raise AmountInvalid(f"Enter an amount in {code} such as {_example(code)}.")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise AmountInvalid(f"Enter an amount in {code} such as {_example(code)}.") from None
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        places = f"{exponent} decimal places" if exponent else "no decimals"
        raise AmountInvalid(f"{code} amounts have {places}.")
    return int(scaled)


def decimal_to_minor_units(value: Decimal | str | int | None, currency: str, *, round_half_up: bool = False) -> int:
    """A decimal amount a platform sent ("10.50" or Decimal) -> minor units of `currency` (1050).

    Strings, ints and Decimals only (parse JSON with parse_float=Decimal): a float here is a bug.
    None or "" is 0. A value with more decimals than the currency has is refused unless
    `round_half_up` (informational amounts where a sub-cent remainder is expected). Raises
    AmountInvalid; callers translate it into their own error family."""
    if isinstance(value, bool | float):
        raise TypeError(f"money must not be a {type(value).__name__}: parse JSON with parse_float=Decimal")
    if value is None or value == "":
        return 0
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise AmountInvalid(f"{value!r} is not a decimal amount") from exc
    if not amount.is_finite():
        raise AmountInvalid(f"{value!r} is not a finite amount")
    scaled = amount.scaleb(currency_exponent(currency))
    if round_half_up:
        scaled = scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if scaled != scaled.to_integral_value():
        raise AmountInvalid(f"{value!r} has more decimals than {(currency or '').upper()} allows")
    return int(scaled)


_PART_NAMES = ("sub_total", "shipping", "tax")


def check_minor_units(name: str, value: object) -> None:
    """Amounts are non-negative ints (bool is not an amount)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int of minor units, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


@dataclass(frozen=True)
class AmountParts:
    """Money split the way refunds are, in minor units of the bag currency.

    `sub_total` is the part of the bag's net sub_total (after discounts): the only part commission
    applies to. Shipping and tax go back from the merchant's transfer alone. Used for what a
    platform says was refunded, what is still refundable, and what a refund returns.
    """

    sub_total: int = 0
    shipping: int = 0
    tax: int = 0

    ZERO: ClassVar[AmountParts]

    def __post_init__(self) -> None:
        for name in _PART_NAMES:
            check_minor_units(f"AmountParts.{name}", getattr(self, name))

    @property
    def total(self) -> int:
        return self.sub_total + self.shipping + self.tax

    def __add__(self, other: object) -> AmountParts:
        if not isinstance(other, AmountParts):
            return NotImplemented
        return AmountParts(
            sub_total=self.sub_total + other.sub_total,
            shipping=self.shipping + other.shipping,
            tax=self.tax + other.tax,
        )


AmountParts.ZERO = AmountParts()

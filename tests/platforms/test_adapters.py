"""Adapters as pure translators: money to minor units, fixtures to normalized order states."""

from decimal import Decimal

import pytest

from platforms.adapters import get_adapter, webhook_adapter_for_slug
from platforms.adapters.base import (
    PlatformDataInvalid,
    RefundLine,
    parse_datetime,
    parse_json,
    to_minor_units,
)
from platforms.adapters.ecwid import EcwidAdapter
from platforms.adapters.sfcc import SfccAdapter
from platforms.adapters.shopify import parse_refund
from platforms.adapters.wix import WixAdapter
from platforms.models import Platform
from tests.platforms.delivery import fixture_json, fixture_text
from violet_refunds.money import AmountParts


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("10.50", "USD", 1050),
        ("0.1", "USD", 10),
        (Decimal("118.00"), "EUR", 11800),
        (40, "USD", 4000),
        ("1050", "JPY", 1050),
        ("1.234", "KWD", 1234),
        ("-5.00", "USD", -500),
        ("", "USD", 0),
        (None, "USD", 0),
    ],
)
def test_to_minor_units(value, currency, minor):
    assert to_minor_units(value, currency) == minor


@pytest.mark.parametrize("value", ["10.005", "1.5e-3", "abc", "NaN", "Infinity"])
def test_to_minor_units_rejects_what_is_not_an_exact_amount(value):
    with pytest.raises(PlatformDataInvalid):
        to_minor_units(value, "USD")


def test_to_minor_units_refuses_floats():
    with pytest.raises(TypeError):
        to_minor_units(10.5, "USD")


def test_informational_amounts_round_half_up():
    assert to_minor_units("9.095", "USD", round_half_up=True) == 910


def test_json_numbers_never_become_floats():
    assert parse_json(b'{"a": 0.1, "b": 3}') == {"a": Decimal("0.1"), "b": 3}


def test_parse_datetime_formats():
    assert parse_datetime("2024-03-14T16:20:05.000Z").isoformat() == "2024-03-14T16:20:05+00:00"
    assert parse_datetime("2014-06-06 18:57:19 +0000").isoformat() == "2014-06-06T18:57:19+00:00"
    assert parse_datetime(1772200811).year == 2026
    assert parse_datetime("yesterday") is None


def test_registry():
    assert webhook_adapter_for_slug("shopify").platform == Platform.SHOPIFY
    assert webhook_adapter_for_slug("sfcc") is None  # polled, no webhooks
    assert webhook_adapter_for_slug("bigcommerce").platform == Platform.BIGCOMMERCE
    assert get_adapter(Platform.SFCC).platform == Platform.SFCC


def test_shopify_refund_fixture_normalizes():
    refund = parse_refund(parse_json(fixture_text("shopify", "refunds_create.json")), order_currency=None)
    assert refund.external_id == "929361462"
    assert refund.amount == 4820
    assert refund.parts == AmountParts(sub_total=4000, shipping=500, tax=320)
    assert refund.lines == (RefundLine("466157049", 1, 4000),)
    assert refund.restock is True


def test_shopify_presentment_money_is_used_when_the_refund_is_in_that_currency():
    payload = parse_json(fixture_text("shopify", "refunds_create.json"))
    line = payload["refund_line_items"][0]
    line["subtotal_set"]["presentment_money"] = {"amount": "36.00", "currency_code": "EUR"}
    line["total_tax_set"]["presentment_money"] = {"amount": "2.88", "currency_code": "EUR"}
    payload["order_adjustments"][0]["amount_set"]["presentment_money"] = {"amount": "-4.50", "currency_code": "EUR"}
    payload["transactions"][0].update(amount="43.38", currency="EUR")
    refund = parse_refund(payload, order_currency=None)
    assert refund.amount == 4338
    assert refund.parts == AmountParts(sub_total=3600, shipping=450, tax=288)


def test_ecwid_order_fixture_normalizes():
    state = EcwidAdapter().state_from_order(
        parse_json(fixture_text("ecwid", "order_cancelled.json")), fallback_currency="USD", body_order_id="K8XTQ"
    )
    assert (state.order_id, state.payment_status, state.cancelled) == ("K8XTQ", "CANCELLED", True)
    assert state.currency == "USD"
    assert "516483487" in state.order_ids
    assert state.totals == AmountParts(sub_total=10000, shipping=1000, tax=800)
    assert [(line.external_id, line.quantity, line.unit_price) for line in state.lines] == [
        ("123456789", 2, 4000),
        ("123456790", 1, 2000),
    ]
    assert state.placed_at.isoformat() == "2026-02-27T14:00:11+00:00"


def test_wix_order_fixture_normalizes():
    order = fixture_json("wix", "order_canceled.json")["data"]["actionEvent"]["body"]["order"]
    state = WixAdapter().state_from_order(order, fallback_currency="EUR")
    assert (state.status, state.cancelled, state.fulfilled, state.currency) == ("CANCELED", True, False, "USD")
    assert state.placed_at.isoformat() == "2024-03-14T16:20:05+00:00"
    assert state.totals == AmountParts(sub_total=10000, shipping=1000, tax=800)


def test_sfcc_order_fixture_normalizes():
    order = parse_json(fixture_text("sfcc", "orders_search.json"))["data"][0]
    state = SfccAdapter().state_from_order(order)
    assert (state.order_id, state.status, state.cancelled, state.currency) == ("00001234", "cancelled", True, "USD")
    assert state.totals == AmountParts(sub_total=10000, shipping=1000, tax=800)
    assert [(line.external_id, line.quantity, line.unit_price) for line in state.lines] == [
        ("a1b2c3d4e5f6a1b2c3d4e5f6", 2, 4000),
        ("f6e5d4c3b2a1f6e5d4c3b2a1", 1, 2000),
    ]

"""BigCommerce's adapter (fixtures to normalized refunds and orders) and its API client."""

from decimal import Decimal

import pytest
import responses

from platforms.adapters import webhook_adapter_for_slug
from platforms.adapters.base import RefundLine, parse_json
from platforms.adapters.bigcommerce import BigCommerceAdapter, parse_refund
from platforms.clients.base import ConnectionMisconfigured, PlatformResponseInvalid
from platforms.clients.bigcommerce import BigCommerceClient
from platforms.models import Platform
from tests.factories import StoreConnectionFactory
from tests.platforms.bigcommerce_store import (
    ACCESS_TOKEN,
    REFUNDS_URL,
    STORE_HASH,
    full_refund,
    partial_refund,
    refunds_body,
)
from tests.platforms.delivery import fixture_text
from violet_refunds.money import AmountParts


def test_registered_for_webhooks():
    adapter = webhook_adapter_for_slug("bigcommerce")
    assert isinstance(adapter, BigCommerceAdapter)
    assert adapter.platform == Platform.BIGCOMMERCE


def _refund_as_parsed() -> dict:
    # As the client hands it over: JSON numbers as Decimal.
    return parse_json(fixture_text("bigcommerce", "refunds_partial.json"))["data"][0]


def test_refund_fixture_normalizes():
    refund = parse_refund(_refund_as_parsed(), currency="USD")
    assert (refund.external_id, refund.amount) == ("3", 4820)
    assert refund.parts == AmountParts(sub_total=4000, shipping=500, tax=320)
    assert refund.lines == (RefundLine("101", 1),)
    assert refund.created_at.isoformat() == "2026-03-03T13:11:19+00:00"


def test_float_artefacts_round_to_the_cent():
    refund = _refund_as_parsed()
    refund["payments"][0]["amount"] = Decimal("48.200000000000003")
    assert parse_refund(refund, currency="USD").amount == 4820


def test_order_fixture_normalizes():
    order_as_parsed = parse_json(fixture_text("bigcommerce", "order.json")) | {"status_id": 5}
    state = BigCommerceAdapter().state_from_api(order_as_parsed, [], fallback_currency="EUR")
    assert (state.order_id, state.status, state.cancelled, state.currency) == ("250", "5", True, "USD")
    assert state.totals == AmountParts(sub_total=10000, shipping=1000, tax=800)
    assert state.placed_at.isoformat() == "2026-02-27T14:00:11+00:00"


@responses.activate
def test_client_follows_refund_pages():
    first = refunds_body(partial_refund())
    first["meta"]["pagination"].update(total=2, total_pages=2)
    responses.get(REFUNDS_URL, json=first)
    responses.get(REFUNDS_URL, json=refunds_body(full_refund()))
    client = BigCommerceClient(store_hash=STORE_HASH, access_token=ACCESS_TOKEN)

    assert [refund["id"] for refund in client.get_order_refunds("250")] == [3, 4]
    assert [call.request.params["page"] for call in responses.calls] == ["1", "2"]
    assert responses.calls[0].request.headers["X-Auth-Token"] == ACCESS_TOKEN


@responses.activate
def test_client_rejects_a_refunds_body_that_is_not_a_list():
    responses.get(REFUNDS_URL, json={"data": {"id": 3}})
    with pytest.raises(PlatformResponseInvalid):
        BigCommerceClient(store_hash=STORE_HASH, access_token=ACCESS_TOKEN).get_order_refunds("250")


def test_client_needs_store_hash_and_token(db):
    connection = StoreConnectionFactory(merchant__platform=Platform.BIGCOMMERCE, credentials={"store_hash": " "})
    with pytest.raises(ConnectionMisconfigured, match="store_hash, access_token"):
        BigCommerceClient.from_connection(connection)

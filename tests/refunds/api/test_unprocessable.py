"""400 or 422 on both APIs (docs/violet-api.md, Errors): a request the OpenAPI document calls
invalid is a 400; a well-formed request that the bag's state refuses is a 422, with the same
`validation_failed` code and field errors. Neither records anything."""

import pytest

from refunds.models import Refund
from tests.portal.test_api import assert_error_shape, bag, key, notice, post  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def _refund(api_client, channel, placed, body):
    url = f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds"
    return api_client.post(url, body, format="json", headers=channel.headers)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount_refunded": 0}, "amount_refunded"),  # below the stated minimum
        ({"amount_refunded": "10"}, "amount_refunded"),  # not an integer
        ({"skus": [{"order_sku_id": 1}]}, "skus"),  # a required field missing
        ({"surprise": 1}, "surprise"),  # not in the document
    ],
)
def test_a_request_the_schema_refuses_is_400(api_client, channel, placed, body, field):
    response = _refund(api_client, channel, placed, body)

    assert field in assert_error_shape(response, 400, "validation_failed")["errors"]
    assert not Refund.objects.exists()


def test_a_well_formed_refund_the_bag_cannot_take_is_422(api_client, channel, placed):
    too_much = _refund(api_client, channel, placed, {"amount_refunded": 10**9})
    other_line = _refund(api_client, channel, placed, {"skus": [{"order_sku_id": 10**9, "quantity_refunded": 1}]})

    assert "amount_refunded" in assert_error_shape(too_much, 422, "validation_failed")["errors"]
    assert "does not belong to this bag" in str(assert_error_shape(other_line, 422, "validation_failed")["errors"])
    assert not Refund.objects.exists()


def test_a_full_bag_refuses_more_with_422(api_client, channel, placed):
    assert _refund(api_client, channel, placed, {}).status_code == 201

    response = _refund(api_client, channel, placed, {"amount_refunded": 1})

    assert "amount_refunded" in assert_error_shape(response, 422, "validation_failed")["errors"]
    assert Refund.objects.count() == 1


def test_notices_say_400_for_shape_and_422_for_state(bag, key):  # noqa: F811 - fixtures
    both_ids = post(notice(bag, bag_id=bag.pk), key)
    blank_reference = post(notice(bag, reference="   "), key)
    unknown_line = post(notice(bag, skus=[{"external_id": "no-such-line", "quantity": 1}]), key)
    other_currency = post(notice(bag, currency="JPY" if bag.currency != "JPY" else "EUR"), key)

    assert "bag_id" in assert_error_shape(both_ids, 400, "validation_failed")["errors"]
    assert "reference" in assert_error_shape(blank_reference, 400, "validation_failed")["errors"]
    assert "skus" in assert_error_shape(unknown_line, 422, "validation_failed")["errors"]
    assert "currency" in assert_error_shape(other_currency, 422, "validation_failed")["errors"]
    assert not Refund.objects.exists()


def test_the_schema_states_the_rules_it_can(api_client):
    openapi = api_client.get("/v1/schema/?format=json").json()
    components = openapi["components"]["schemas"]

    assert components["RefundNotice"]["oneOf"] == [{"required": ["bag_id"]}, {"required": ["platform_order_id"]}]
    assert components["NoticeLine"]["oneOf"] == [{"required": ["order_sku_id"]}, {"required": ["external_id"]}]
    assert components["WebhookCreateRequest"]["not"] == {"required": ["event", "events"]}
    assert components["RefundNotice"]["properties"]["reference"]["pattern"].startswith("^")
    assert components["WebhookCreateRequest"]["properties"]["remote_endpoint"]["pattern"].startswith("^[Hh]")
    for path in ("/v1/orders/{order_id}/bags/{bag_id}/refunds", "/portal/api/refund-notices"):
        assert {"400", "422"} <= set(openapi["paths"][path]["post"]["responses"])

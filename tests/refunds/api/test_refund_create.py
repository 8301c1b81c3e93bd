"""POST /orders/{order_id}/bags/{bag_id}/refunds: strict input, the service's rules, idempotency."""

import pytest

from refunds.models import BagStatus, Refund, RefundEvent, RefundSku, RefundSource, RefundStatus
from tests.factories import OrderSkuFactory
from tests.refunds.api.conftest import place_order

pytestmark = pytest.mark.django_db


def _url(placed) -> str:
    return f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds"


def _post(api_client, channel, placed, body, **headers):
    return api_client.post(_url(placed), body, format="json", headers={**channel.headers, **headers})


def test_an_empty_body_refunds_everything_left_on_the_bag(api_client, channel, placed):
    response = _post(api_client, channel, placed, {})

    assert response.status_code == 201
    refund = Refund.objects.get()
    body = response.json()
    assert body["id"] == refund.pk
    assert (body["status"], body["amount"], body["tax_amount"]) == ("PROCESSING", 11300, 800)
    assert body["shipping"]["amount"] == 500
    assert sorted((sku["order_sku_id"], sku["quantity_refunded"]) for sku in body["skus"]) == [
        (placed.skus[0].pk, 2),
        (placed.skus[1].pk, 1),
    ]
    assert refund.source == RefundSource.CHANNEL_API
    assert refund.status == RefundStatus.PROCESSING
    assert refund.created_by == channel.owner
    event = RefundEvent.objects.get(refund=refund, kind=RefundEvent.Kind.RECORDED)
    assert event.actor == f"channel:{channel.app.pk}"
    # The bag's merchant has no connected store: not forwarded, the merchant mirrors it (issue 14).
    assert refund.forwarding.state == "NOT_FORWARDED"


def test_an_amount_alone_is_a_partial_refund(api_client, channel, placed):
    response = _post(
        api_client,
        channel,
        placed,
        {"amount_refunded": 1130, "reason": "Damaged box", "reason_code": "CUSTOMER", "notify_customer": True},
    )

    assert response.status_code == 201
    refund = Refund.objects.get()
    assert refund.amount == 1130
    assert (refund.reason, refund.reason_code, refund.notify_customer) == ("Damaged box", "CUSTOMER", True)
    assert response.json()["amount"] == 1130


def test_skus_alone_refund_those_items(api_client, channel, placed):
    line = {"order_sku_id": placed.skus[0].pk, "quantity_refunded": 1}

    response = _post(api_client, channel, placed, {"skus": [line], "restock_items": True})

    assert response.status_code == 201
    refund = Refund.objects.get()
    assert (refund.amount, refund.sub_total_amount, refund.restock_items) == (2500, 2500, True)
    assert list(RefundSku.objects.values_list("order_sku_id", "quantity_refunded")) == [(placed.skus[0].pk, 1)]
    placed.skus[0].refresh_from_db()
    assert placed.skus[0].quantity_refunded == 1


def test_the_documented_example_body(api_client, channel, placed):
    body = {
        "amount_refunded": 3000,
        "shipping": {"amount": 500},
        "skus": [{"order_sku_id": placed.skus[0].pk, "quantity_refunded": 1, "amount_refunded": 2500}],
    }

    response = _post(api_client, channel, placed, body)

    assert response.status_code == 201
    assert response.json()["amount"] == 3000
    assert response.json()["shipping"] == {
        "amount": 500,
        "tax_amount": 0,
        "full_refund": True,
        "discrepancy_reason": None,
    }
    refund = Refund.objects.get()
    assert (refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (2500, 500, 0)


def test_shipping_tax_is_refunded_as_tax(api_client, channel, placed):
    response = _post(api_client, channel, placed, {"shipping": {"amount": 200, "tax_amount": 16}})

    assert response.status_code == 201
    body = response.json()
    assert (body["amount"], body["tax_amount"]) == (216, 16)
    assert body["shipping"]["tax_amount"] == 16
    assert body["shipping"]["full_refund"] is False


# --- validation: a malformed request is a 400 naming the field, a well-formed one the bag's state ---
# --- refuses (more than is left, another bag's line, a bag not refundable) a 422; neither writes ---


def _assert_rejected(response, field: str, status: int = 400):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"] == status
    assert body["error_code"] == "validation_failed"
    assert field in body["errors"], body
    assert Refund.objects.count() == 0
    assert RefundSku.objects.count() == 0


@pytest.mark.parametrize(
    "amount",
    [0, -1, -11300, 10.5, 1e9, "1e9", "abc", "100", True, False, [100], {"value": 100}, 2**70],
    ids=lambda amount: repr(amount),
)
def test_bad_amounts_are_rejected(api_client, channel, placed, amount):
    _assert_rejected(_post(api_client, channel, placed, {"amount_refunded": amount}), "amount_refunded")


def test_an_amount_above_what_is_left_is_422(api_client, channel, placed):
    _assert_rejected(_post(api_client, channel, placed, {"amount_refunded": 11301}), "amount_refunded", 422)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 100}, "amount"),
        ({"reason": "x" * 256}, "reason"),
        ({"reason": 5}, "reason"),
        ({"reason_code": "NOPE"}, "reason_code"),
        ({"reason_code": 1}, "reason_code"),
        ({"restock_items": "yes"}, "restock_items"),
        ({"notify_customer": 1}, "notify_customer"),
        ({"shipping": {"amount": 5.5}}, "shipping"),
        ({"shipping": {"amount": 100, "currency": "USD"}}, "shipping"),
        ({"shipping": {}}, "shipping"),
        ({"shipping": 100}, "shipping"),
        ({"skus": []}, "skus"),
        ({"skus": "all"}, "skus"),
        ({"skus": [{"order_sku_id": 1}]}, "skus"),
    ],
)
def test_bad_fields_are_rejected(api_client, channel, placed, body, field):
    _assert_rejected(_post(api_client, channel, placed, body), field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"shipping": {"amount": 501}}, "shipping"),  # more shipping than the bag has left
        ({"shipping": {"amount": 0}}, "amount_refunded"),  # nothing to refund
    ],
)
def test_well_formed_fields_the_bag_cannot_take_are_422(api_client, channel, placed, body, field):
    _assert_rejected(_post(api_client, channel, placed, body), field, 422)


def test_a_quantity_above_what_is_left_is_rejected(api_client, channel, placed):
    line = {"order_sku_id": placed.skus[0].pk, "quantity_refunded": 3}

    _assert_rejected(_post(api_client, channel, placed, {"skus": [line]}), "skus", 422)


def test_a_quantity_already_refunded_is_not_refundable_again(api_client, channel, placed):
    line = {"order_sku_id": placed.skus[0].pk, "quantity_refunded": 2}
    assert _post(api_client, channel, placed, {"skus": [line]}).status_code == 201

    response = _post(api_client, channel, placed, {"skus": [{**line, "quantity_refunded": 1}]})

    assert response.status_code == 422
    assert "skus" in response.json()["errors"]
    assert Refund.objects.count() == 1


@pytest.mark.parametrize("quantity", [0, -1, 1.0, "1", True])
def test_bad_quantities_are_rejected(api_client, channel, placed, quantity):
    line = {"order_sku_id": placed.skus[0].pk, "quantity_refunded": quantity}

    _assert_rejected(_post(api_client, channel, placed, {"skus": [line]}), "skus")


def test_a_sku_listed_twice_is_rejected(api_client, channel, placed):
    line = {"order_sku_id": placed.skus[0].pk, "quantity_refunded": 1}

    _assert_rejected(_post(api_client, channel, placed, {"skus": [line, line]}), "skus")


def test_a_sku_of_another_bag_is_rejected(api_client, channel, placed):
    other_bag_sku = OrderSkuFactory(bag=place_order(channel.app).bag)
    line = {"order_sku_id": other_bag_sku.pk, "quantity_refunded": 1}

    _assert_rejected(_post(api_client, channel, placed, {"skus": [line]}), "skus", 422)


def test_a_sku_of_another_apps_bag_is_rejected(api_client, channel, placed, foreign):
    line = {"order_sku_id": foreign.skus[0].pk, "quantity_refunded": 1}

    _assert_rejected(_post(api_client, channel, placed, {"skus": [line]}), "skus", 422)
    foreign.skus[0].refresh_from_db()
    assert foreign.skus[0].quantity_refunded == 0


@pytest.mark.parametrize("status", [BagStatus.IN_PROGRESS, BagStatus.REFUNDED])
def test_a_bag_in_a_non_refundable_status_is_rejected(api_client, channel, status):
    placed = place_order(channel.app, bag_status=status)

    _assert_rejected(_post(api_client, channel, placed, {}), "bag", 422)


def test_nothing_more_can_be_refunded_after_a_full_refund(api_client, channel, placed):
    assert _post(api_client, channel, placed, {}).status_code == 201

    response = _post(api_client, channel, placed, {"amount_refunded": 1})

    assert response.status_code == 422
    assert "amount_refunded" in response.json()["errors"]
    assert Refund.objects.count() == 1


@pytest.mark.parametrize("payload", [b"[1, 2]", b"null", b'"refund"', b"{not json", b"12"])
def test_a_body_that_is_not_a_json_object_is_rejected(api_client, channel, placed, payload):
    response = api_client.generic(
        "POST", _url(placed), payload, content_type="application/json", headers=channel.headers
    )

    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert Refund.objects.count() == 0


# --- idempotency -------------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_first_refund_and_creates_nothing(api_client, channel, placed):
    first = _post(api_client, channel, placed, {"amount_refunded": 1000}, **{"Idempotency-Key": "req-1"})
    again = _post(api_client, channel, placed, {"amount_refunded": 1000}, **{"Idempotency-Key": "req-1"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["amount"] == 1000
    assert Refund.objects.count() == 1
    assert RefundEvent.objects.filter(kind=RefundEvent.Kind.RECORDED).count() == 1
    assert Refund.objects.get().request_key == "req-1"


def test_a_repeated_key_is_answered_even_once_the_bag_is_fully_refunded(api_client, channel, placed):
    first = _post(api_client, channel, placed, {}, **{"Idempotency-Key": "full"})
    again = _post(api_client, channel, placed, {}, **{"Idempotency-Key": "full"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Refund.objects.count() == 1


def test_without_a_key_each_post_is_a_new_refund(api_client, channel, placed):
    assert _post(api_client, channel, placed, {"amount_refunded": 100}).status_code == 201
    assert _post(api_client, channel, placed, {"amount_refunded": 100}).status_code == 201

    assert Refund.objects.count() == 2


def test_a_new_key_is_a_new_refund(api_client, channel, placed):
    _post(api_client, channel, placed, {"amount_refunded": 100}, **{"Idempotency-Key": "a"})
    response = _post(api_client, channel, placed, {"amount_refunded": 100}, **{"Idempotency-Key": "b"})

    assert response.status_code == 201
    assert Refund.objects.count() == 2


def test_an_overlong_idempotency_key_is_rejected(api_client, channel, placed):
    response = _post(api_client, channel, placed, {}, **{"Idempotency-Key": "k" * 256})

    _assert_rejected(response, "Idempotency-Key")

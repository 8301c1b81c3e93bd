"""Every 4xx under /v1/ is JSON in the one error shape; no HTML page is ever served there."""

import pytest

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"status", "message", "error_code", "timestamp"}


def _assert_json_error(response, status: int):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"errors"}
    assert body["status"] == status
    assert isinstance(body["timestamp"], int)
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/",
        "/v1/nope",
        "/v1/orders",
        "/v1/orders/abc/refunds",
        "/v1/orders/1/refunds/",
        "/v1/orders/-1/refunds",
        "/v1/orders/1/refunds/2/extra",
        "/v1/login/",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
def test_unknown_paths_are_the_json_404(api_client, path, method):
    response = getattr(api_client, method)(path, headers={"Accept": "text/html"})

    body = _assert_json_error(response, 404)
    assert body["error_code"] == "not_found"


def test_a_wrong_method_is_the_json_405(api_client, channel, placed):
    response = api_client.delete(f"/v1/orders/{placed.order.pk}/refunds", headers=channel.headers)

    body = _assert_json_error(response, 405)
    assert body["error_code"] == "method_not_allowed"


def test_get_on_login_is_405(api_client, channel):
    _assert_json_error(api_client.get("/v1/login", headers=channel.headers), 405)


def test_asking_for_html_still_gets_json(api_client, channel, placed):
    response = api_client.get(
        f"/v1/orders/{placed.order.pk}/refunds", headers={**channel.headers, "Accept": "text/html"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == []


def test_a_non_json_body_is_the_json_415(api_client, channel, placed):
    response = api_client.post(
        f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds",
        "amount_refunded=100",
        content_type="application/x-www-form-urlencoded",
        headers=channel.headers,
    )

    _assert_json_error(response, 415)


def test_unauthenticated_requests_are_json_401_with_a_challenge(api_client, placed):
    response = api_client.get(f"/v1/orders/{placed.order.pk}/refunds")

    _assert_json_error(response, 401)
    assert response["WWW-Authenticate"]


@pytest.mark.parametrize("order_id", ["9" * 25, str(2**63)])
def test_ids_beyond_64_bits_are_a_404_not_a_crash(api_client, channel, order_id):
    response = api_client.get(f"/v1/orders/{order_id}/refunds/{order_id}", headers=channel.headers)

    _assert_json_error(response, 404)

"""Request bodies (issue 19, item 2): every JSON endpoint takes a JSON object and nothing else.

An empty body is a 400 (never a whole-bag refund), the content type is enforced even when the body
is empty (415), and too deep or too large bodies are 400 / 413, all in the API's one error shape,
on the channel API, the merchant notice API and the platform webhook receivers alike.
"""

import json

import pytest
from django.test import Client, override_settings

from platforms.adapters.shopify import shopify_hmac
from portal.keys import api_key_create
from refunds.models import Refund
from tests.platforms.conftest import shopify_store  # noqa: F401 - fixture
from tests.platforms.delivery import SHOPIFY_SECRET, post_webhook
from tests.portal.conftest import notice_bag
from tests.refunds.api.conftest import place_order

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"status", "message", "error_code", "timestamp"}
NOTICE_URL = "/portal/api/refund-notices"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_object(depth: int) -> str:
    return '{"reason": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


def assert_error(response, status: int, error_code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"errors"}
    assert body["status"] == status and body["error_code"] == error_code
    assert isinstance(body["timestamp"], int) and body["message"]
    return body


def _refund_url(placed) -> str:
    return f"/v1/orders/{placed.order.pk}/bags/{placed.bag.pk}/refunds"


def _post_raw(url, body: bytes | str, content_type: str | None, **headers):
    client = Client()
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    # Django's test client sets CONTENT_TYPE only with a body: set (or leave out) the header here.
    if content_type is not None:
        extra["CONTENT_TYPE"] = content_type
    return client.generic("POST", url, body, content_type=content_type or "", **extra)


# --- channel API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", None, "text/plain"])
def test_an_empty_body_refunds_nothing(channel, content_type):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), b"", content_type, **channel.headers)

    if content_type == "application/json":
        body = assert_error(response, 400, "invalid_body")
        assert "JSON object" in body["message"]
    else:
        assert_error(response, 415, "unsupported_media_type")
    assert not Refund.objects.exists()


def test_a_whole_bag_refund_is_an_explicit_empty_object(channel):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), b"{}", "application/json", **channel.headers)

    assert response.status_code == 201, response.json()
    assert response.json()["amount"] == 11300


@pytest.mark.parametrize("payload", ["[]", '"text"', "1", "null", "true", "{not json", "\ufeff{}"])
def test_anything_but_a_json_object_is_400(channel, payload):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), payload.encode(), "application/json", **channel.headers)

    assert_error(response, 400, "invalid_body")
    assert not Refund.objects.exists()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415(channel, content_type):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), b"{}", content_type, **channel.headers)

    assert_error(response, 415, "unsupported_media_type")


def test_json_with_a_charset_is_json(channel):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), b"{}", "application/json; charset=utf-8", **channel.headers)

    assert response.status_code == 201


@pytest.mark.parametrize("body", [_nested(100_000), _nested(5_000), _deep_object(200)])
def test_deeply_nested_json_is_400_not_500(channel, body):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), body, "application/json", **channel.headers)

    assert_error(response, 400, "invalid_body")
    assert not Refund.objects.exists()


def test_a_3_mb_body_is_413_json(channel):
    placed = place_order(channel.app)
    body = json.dumps({"reason": "x" * (3 * 1024 * 1024)})
    response = _post_raw(_refund_url(placed), body, "application/json", **channel.headers)

    assert_error(response, 413, "payload_too_large")


@override_settings(API_MAX_BODY_BYTES=64)
def test_the_size_limit_counts_the_bytes_received_not_the_declared_length(channel):
    placed = place_order(channel.app)
    body = json.dumps({"reason": "x" * 100}).encode()
    response = _post_raw(_refund_url(placed), body, "application/json", **channel.headers)

    assert_error(response, 413, "payload_too_large")


def test_credentials_are_checked_before_the_body(channel):
    placed = place_order(channel.app)
    response = _post_raw(_refund_url(placed), b"", None, **{"X-Violet-App-Id": str(channel.app.pk)})

    assert response.status_code == 401


def test_other_json_endpoints_require_an_object_too(channel):
    for path in ("/v1/events/webhooks", "/v1/login"):
        assert_error(_post_raw(path, b"", "application/json", **channel.headers), 400, "invalid_body")
        assert_error(_post_raw(path, b"{}", "text/plain", **channel.headers), 415, "unsupported_media_type")


# --- merchant notice API -------------------------------------------------------------------------


@pytest.fixture
def notice_key():
    bag = notice_bag()
    return api_key_create(merchant=bag.merchant, name="OMS")


def _notice(key, body, content_type="application/json"):
    return _post_raw(NOTICE_URL, body, content_type, Authorization=f"Bearer {key.plaintext}")


@pytest.mark.parametrize("body", [_nested(100_000), _deep_object(200)])
def test_notice_api_deep_json_is_400_json_not_a_server_error_page(notice_key, body):
    assert_error(_notice(notice_key, body), 400, "invalid_body")


def test_notice_api_empty_body_and_content_types(notice_key):
    assert_error(_notice(notice_key, b""), 400, "invalid_body")
    assert_error(_notice(notice_key, b"", None), 415, "unsupported_media_type")
    assert_error(_notice(notice_key, b"{}", "text/plain"), 415, "unsupported_media_type")


def test_notice_api_3_mb_is_413_json(notice_key):
    assert_error(_notice(notice_key, json.dumps({"reason": "x" * (3 * 1024 * 1024)})), 413, "payload_too_large")


# --- platform webhook receivers -------------------------------------------------------------------


def test_a_signed_deeply_nested_webhook_is_400_json(shopify_store):  # noqa: F811
    body = _nested(100_000).encode()
    signed = {"X-Shopify-Hmac-Sha256": shopify_hmac(SHOPIFY_SECRET, body)}
    response = post_webhook(shopify_store, body=body, topic="refunds/create", event_id="w", secret=None, headers=signed)

    assert_error(response, 400, "invalid_body")


def test_an_unsigned_deeply_nested_webhook_is_401(shopify_store):  # noqa: F811
    body = _nested(100_000).encode()
    response = post_webhook(shopify_store, body=body, topic="refunds/create", event_id="w", secret=None)

    assert_error(response, 401, "invalid_signature")


def test_a_3_mb_webhook_is_413_json(shopify_store):  # noqa: F811
    body = json.dumps({"x": "y" * (3 * 1024 * 1024)}).encode()
    response = post_webhook(shopify_store, body=body, topic="refunds/create", event_id="w")

    assert_error(response, 413, "payload_too_large")

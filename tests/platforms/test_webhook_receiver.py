"""Bad input at the webhook receiver: the right 4xx with a JSON error body, and nothing stored."""

import io
import json
import uuid

import pytest
from django.test import Client, RequestFactory, override_settings

from platforms import views
from platforms.adapters.ecwid import ecwid_signature
from platforms.adapters.shopify import shopify_hmac
from platforms.models import InboundEvent, Platform
from tests.factories import StoreConnectionFactory
from tests.platforms.conftest import make_store
from tests.platforms.delivery import (
    ECWID_CLIENT_SECRET,
    REMOVED,
    SHOPIFY_SECRET,
    assert_rejected,
    fixture_json,
    fixture_text,
    post_webhook,
    wix_jwt,
)

REFUND_BODY = fixture_text("shopify", "refunds_create.json").encode()


def test_missing_signature_is_401(shopify_store):
    response = post_webhook(shopify_store, "refunds_create", event_id="w", secret=None)
    assert_rejected(response, 401, "invalid_signature")


def test_signature_with_another_secret_is_401(shopify_store):
    response = post_webhook(shopify_store, "refunds_create", event_id="w", secret="x")
    assert_rejected(response, 401, "invalid_signature")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.replace(b'"48.20"', b'"98.20"'),  # one value changed
        lambda body: body + b" ",  # whitespace added
        lambda body: body[:-2] + bytes([body[-2] ^ 1]) + body[-1:],  # one bit flipped
    ],
    ids=["value", "whitespace", "bitflip"],
)
def test_tampered_body_is_401(shopify_store, tamper):
    signed = {"X-Shopify-Hmac-Sha256": shopify_hmac(SHOPIFY_SECRET, REFUND_BODY)}
    response = post_webhook(
        shopify_store, body=tamper(REFUND_BODY), topic="refunds/create", event_id="w", secret=None, headers=signed
    )
    assert_rejected(response, 401, "invalid_signature")


def test_signed_but_malformed_json_is_400(shopify_store):
    response = post_webhook(shopify_store, body=b'{"id": 1,', topic="refunds/create", event_id="w")
    assert_rejected(response, 400, "malformed_payload")


def test_signed_json_that_is_not_an_object_is_400(shopify_store):
    response = post_webhook(shopify_store, body=b"[1, 2]", topic="refunds/create", event_id="w")
    assert_rejected(response, 400, "malformed_payload")


def test_signed_but_without_delivery_id_is_400(shopify_store):
    no_delivery_id = {"X-Shopify-Webhook-Id": None, "X-Shopify-Event-Id": None}
    response = post_webhook(shopify_store, "refunds_create", headers=no_delivery_id)
    assert_rejected(response, 400, "malformed_payload")


def test_unknown_connection_is_404(shopify_store):
    url = shopify_store.url().replace(str(shopify_store.connection.public_id), str(uuid.uuid4()))
    assert_rejected(post_webhook(shopify_store, "refunds_create", url=url), 404, "not_found")


def test_malformed_connection_id_is_404(shopify_store):
    response = post_webhook(shopify_store, "refunds_create", url="/webhooks/shopify/not-a-uuid/")
    assert_rejected(response, 404, "not_found")


@pytest.mark.parametrize("slug", ["ecwid", "wix", "bigcommerce", "nosuchplatform", "sfcc"])
def test_platform_in_url_that_is_not_the_connections_is_404(shopify_store, slug):
    response = post_webhook(shopify_store, "refunds_create", event_id="w", url=shopify_store.url(slug))
    assert_rejected(response, 404, "not_found")


def test_sfcc_has_no_webhook_endpoint(client, db):
    connection = StoreConnectionFactory(merchant__platform=Platform.SFCC)
    response = client.post(f"/webhooks/sfcc/{connection.public_id}/", data=b"{}", content_type="application/json")
    assert_rejected(response, 404, "not_found")


@override_settings(PLATFORM_WEBHOOK_MAX_BODY_BYTES=1000)
def test_body_over_the_limit_is_413_by_content_length(shopify_store):
    response = post_webhook(shopify_store, {"padding": "x" * 2000}, topic="refunds/create", event_id="big")
    assert_rejected(response, 413, "payload_too_large")


def test_default_limit_is_one_mebibyte(shopify_store):
    response = post_webhook(shopify_store, {"padding": "x" * (1024 * 1024)}, topic="refunds/create", event_id="big")
    assert_rejected(response, 413, "payload_too_large")


@override_settings(PLATFORM_WEBHOOK_MAX_BODY_BYTES=1000)
def test_body_over_the_limit_is_413_by_bytes_read_when_length_is_not_declared(shopify_store):
    body = json.dumps({"padding": "x" * 2000}).encode()
    request = RequestFactory().post(shopify_store.url(), data=body, content_type="application/json")
    del request.META["CONTENT_LENGTH"]
    request._stream = io.BytesIO(body)
    response = views.receive_webhook(request, "shopify", str(shopify_store.connection.public_id))
    assert response.status_code == 413
    assert json.loads(response.content)["error_code"] == "payload_too_large"
    assert not InboundEvent.objects.exists()


def test_get_is_405(client, shopify_store):
    response = client.get(shopify_store.url())
    assert_rejected(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_url_without_trailing_slash_works(shopify_store):
    url = shopify_store.url().rstrip("/")
    response = post_webhook(shopify_store, body=b"{}", topic="products/update", event_id="ns2", url=url)
    assert response.status_code == 200
    assert InboundEvent.objects.get().event_id == "ns2"


def test_webhook_needs_no_csrf_token_but_other_posts_do(shopify_store):
    csrf_client = Client(enforce_csrf_checks=True)
    response = post_webhook(shopify_store, body=b"{}", topic="products/update", event_id="csrf", client=csrf_client)
    assert response.status_code == 200


def test_cookie_and_authorization_headers_are_not_stored(shopify_store):
    authorization = {"Authorization": "Bearer x"}
    post_webhook(shopify_store, body=b"{}", topic="products/update", event_id="h", headers=authorization)
    headers = InboundEvent.objects.get().headers
    assert "Authorization" not in headers
    assert headers["X-Shopify-Topic"] == "products/update"


# --- Ecwid ---

ECWID_EVENT = "webhook_order_updated_cancelled"


def test_ecwid_missing_signature_is_401(ecwid_store):
    response = post_webhook(ecwid_store, ECWID_EVENT, secret=None)
    assert_rejected(response, 401, "invalid_signature")


def test_ecwid_signature_with_another_secret_is_401(ecwid_store):
    assert_rejected(post_webhook(ecwid_store, ECWID_EVENT, secret="other"), 401, "invalid_signature")


def test_ecwid_signature_of_another_event_id_is_401(ecwid_store):
    payload = fixture_json("ecwid", f"{ECWID_EVENT}.json")
    other_event_id = "11111111-40e8-4145-8764-6c2f0d386781"
    signed_for_other = {
        "X-Ecwid-Webhook-Signature": ecwid_signature(ECWID_CLIENT_SECRET, payload["eventCreated"], other_event_id)
    }
    response = post_webhook(ecwid_store, ECWID_EVENT, secret=None, headers=signed_for_other)
    assert_rejected(response, 401, "invalid_signature")


def test_ecwid_malformed_json_is_400(ecwid_store):
    response = post_webhook(
        ecwid_store,
        body=b"eventId=1",
        content_type="text/plain",
        secret=None,
        headers={"X-Ecwid-Webhook-Signature": "x"},
    )
    assert_rejected(response, 400, "malformed_payload")


def test_ecwid_without_event_id_is_400(ecwid_store):
    response = post_webhook(
        ecwid_store, ECWID_EVENT, changes={"eventId": REMOVED}, secret=None, headers={"X-Ecwid-Webhook-Signature": "x"}
    )
    assert_rejected(response, 400, "malformed_payload")


# --- Wix ---


@pytest.fixture
def wix_store(db, wix_keys):
    return make_store(
        Platform.WIX,
        order_id="2f7c8a9e-1b3d-4e5f-a6b7-c8d9e0f1a2b3",
        line_ids=("9c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b", "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"),
        webhook_secret=wix_keys[1],
    )


def test_wix_jwt_signed_with_another_key_is_401(wix_store):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert_rejected(post_webhook(wix_store, "order_canceled", secret=other_pem), 401, "invalid_signature")


def test_wix_body_that_is_not_a_jwt_is_401(wix_store):
    response = post_webhook(wix_store, body=b'{"data": "x"}', content_type="application/json")
    assert_rejected(response, 401, "invalid_signature")


def test_wix_tampered_jwt_payload_is_401(wix_store, wix_keys):
    header, payload, signature = wix_jwt(fixture_json("wix", "order_canceled.json"), wix_keys[0]).split(b".")
    tampered = b".".join([header, payload[:-4] + (b"AAAA" if payload[-4:] != b"AAAA" else b"BBBB"), signature])
    assert_rejected(post_webhook(wix_store, body=tampered), 401, "invalid_signature")


def test_wix_jwt_without_event_id_is_400(wix_store):
    response = post_webhook(wix_store, "order_canceled", changes={"data.id": REMOVED})
    assert_rejected(response, 400, "malformed_payload")

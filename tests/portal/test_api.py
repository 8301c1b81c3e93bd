"""The refund-notice API: POST /portal/api/refund-notices with a merchant API key."""

import hashlib
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from platforms.models import MerchantApiKey, Platform
from portal.keys import api_key_authenticate, api_key_create, api_key_hash
from refunds.models import Refund, RefundEvent, RefundSource
from tests.factories import BagFactory, MerchantApiKeyFactory, MerchantFactory, OrderSkuFactory
from tests.portal.conftest import logged_in, notice_bag, portal_user

pytestmark = pytest.mark.django_db

URL = "/portal/api/refund-notices"


@pytest.fixture
def bag():
    return notice_bag()


@pytest.fixture
def key(bag):
    return api_key_create(merchant=bag.merchant, name="OMS")


def post(body, key=None, client=None, **headers):
    client = client or Client()
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key if isinstance(key, str) else key.plaintext}"
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, payload, content_type="application/json", **headers)


def notice(bag, **overrides):
    first = bag.skus.order_by("pk")[0]
    body = {
        "platform_order_id": bag.external_id,
        "skus": [{"external_id": first.external_id, "quantity": 1}],
        "shipping_amount": 500,
        "tax_amount": 80,
        "reason_code": "CUSTOMER",
        "reference": "RF-API-1",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def assert_error_shape(response, status, error_code):
    body = response.json()
    assert response.status_code == status, body
    assert body["status"] == status and body["error_code"] == error_code
    assert isinstance(body["message"], str) and isinstance(body["timestamp"], int)
    return body


def test_the_url_is_the_documented_one():
    assert reverse("portal:api_refund_notices") == URL


def test_a_notice_is_recorded_and_answered_201(bag, key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(notice(bag), key)
    assert response.status_code == 201, response.json()
    body = response.json()
    refund = Refund.objects.get(bag=bag)
    first = bag.skus.order_by("pk")[0]
    assert body["id"] == refund.pk and body["bag_id"] == bag.pk and body["platform_order_id"] == bag.external_id
    assert (body["sub_total_amount"], body["shipping_amount"], body["tax_amount"], body["amount"]) == (
        5000,
        500,
        80,
        5580,
    )
    assert body["currency"] == "USD" and body["reference"] == "RF-API-1" and body["reason_code"] == "CUSTOMER"
    assert body["status"] == "PROCESSING"  # the answer is written before processing runs after commit
    assert body["skus"] == [{"order_sku_id": first.pk, "external_id": first.external_id, "quantity": 1}]
    assert body["status_url"].endswith(reverse("portal:refund_detail", args=[refund.pk]))
    assert refund.source == RefundSource.MERCHANT_NOTICE and refund.external_id == "RF-API-1"
    assert RefundEvent.objects.get(refund=refund, kind="RECORDED").actor == f"merchant-api-key:{key.api_key.prefix}"
    refund.refresh_from_db()
    assert refund.status == "COMPLETED"
    key.api_key.refresh_from_db()
    assert key.api_key.last_used_at is not None


def test_the_same_reference_answers_200_with_the_same_refund(bag, key):
    first = post(notice(bag), key)
    second = post(notice(bag), key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    # The same reference for another notice: refused, naming the first refund (issue 19).
    other = post(notice(bag, skus=[{"order_sku_id": bag.skus.order_by("pk")[1].pk, "quantity": 1}]), key)
    body = assert_error_shape(other, 422, "idempotency_key_reused")
    assert str(first.json()["id"]) in body["message"] and "reference" in body["errors"]
    assert Refund.objects.filter(bag=bag).count() == 1


def test_the_idempotency_key_header_is_the_request_key(bag, key):
    first = post(notice(bag), key, HTTP_IDEMPOTENCY_KEY="retry-1")
    second = post(notice(bag), key, HTTP_IDEMPOTENCY_KEY="retry-1")
    assert (first.status_code, second.status_code) == (201, 200)
    other = post(notice(bag, reference="RF-API-2"), key, HTTP_IDEMPOTENCY_KEY="retry-1")
    assert assert_error_shape(other, 422, "idempotency_key_reused")["errors"] == {
        "Idempotency-Key": [f"Already used for refund {first.json()['id']} with a different request."]
    }
    assert Refund.objects.get(bag=bag).request_key == "retry-1"


def test_bag_id_and_order_sku_id_work_too(bag, key):
    sku = bag.skus.order_by("pk")[1]
    body = notice(bag, platform_order_id=None, bag_id=bag.pk, skus=[{"order_sku_id": sku.pk, "quantity": 1}])
    response = post(body, key)
    assert response.status_code == 201
    assert response.json()["sub_total_amount"] == 1500


def test_a_lower_items_amount_can_be_given(bag, key):
    response = post(notice(bag, sub_total_amount=4000, tax_amount=0, shipping_amount=0), key)
    assert response.status_code == 201
    assert response.json()["amount"] == 4000


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token vrk_abc",
        "Bearer vrk_000000000000_nope",
        "Bearer x" * 50,
    ],
)
def test_missing_or_wrong_keys_are_401(bag, key, header):
    headers = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = Client().post(URL, json.dumps(notice(bag)), content_type="application/json", **headers)
    assert_error_shape(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Refund.objects.exists()


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_401(bag, key):
    forged = key.plaintext[:17] + ("A" if key.plaintext[17] != "A" else "B") + key.plaintext[18:]
    assert_error_shape(post(notice(bag), forged), 401, "authentication_failed")


def test_a_revoked_key_is_401(bag, key):
    MerchantApiKey.objects.filter(pk=key.api_key.pk).update(revoked_at=timezone.now())
    assert_error_shape(post(notice(bag), key), 401, "authentication_failed")
    assert not Refund.objects.exists()


def test_only_a_hash_and_the_prefix_are_stored(key):
    row = MerchantApiKey.objects.get(pk=key.api_key.pk)
    assert row.prefix == key.plaintext[:16] and row.prefix.startswith("vrk_")
    assert row.key_hash == hashlib.sha256(key.plaintext.encode()).hexdigest() == api_key_hash(key.plaintext)
    secret_part = key.plaintext[17:]
    assert len(secret_part) >= 43
    assert all(secret_part not in str(value) for value in MerchantApiKey.objects.values_list().get(pk=row.pk))


def test_authenticate_finds_only_the_exact_key(key):
    assert api_key_authenticate(key.plaintext) == key.api_key
    assert api_key_authenticate(f"  {key.plaintext} ") == key.api_key
    assert api_key_authenticate(key.plaintext + "x") is None
    assert api_key_authenticate(key.plaintext[:16]) is None
    assert api_key_authenticate("") is None


def test_a_session_is_not_a_key(bag):

    client = logged_in(portal_user(bag.merchant), enforce_csrf_checks=True)
    assert_error_shape(post(notice(bag), client=client), 401, "authentication_failed")


def test_no_csrf_token_is_needed_with_a_key(bag, key):
    client = Client(enforce_csrf_checks=True)
    assert post(notice(bag), key, client=client).status_code == 201


# --- scoping -------------------------------------------------------------------------------------


def test_another_merchants_order_is_404(bag, key):
    other = notice_bag()
    for body in (notice(other), notice(other, platform_order_id=None, bag_id=other.pk)):
        body["skus"] = []
        assert_error_shape(post(body, key), 404, "not_found")
    assert not Refund.objects.exists()


def test_another_merchants_line_is_refused(bag, key):
    other = notice_bag()
    body = notice(bag, skus=[{"order_sku_id": other.skus.first().pk, "quantity": 1}])
    body_error = assert_error_shape(post(body, key), 422, "validation_failed")
    assert "does not belong to this bag" in str(body_error["errors"]["skus"])
    assert not Refund.objects.exists()


def test_a_merchant_whose_platform_reports_refunds_is_refused():
    merchant = MerchantFactory(platform=Platform.SHOPIFY)
    bag = BagFactory(merchant=merchant)
    OrderSkuFactory(bag=bag)
    plaintext = "vrk_0123456789ab_" + "s" * 43
    MerchantApiKeyFactory(merchant=merchant, prefix=plaintext[:16], key_hash=api_key_hash(plaintext))
    response = post(notice(bag), plaintext)
    assert_error_shape(response, 403, "refund_notices_not_enabled")
    assert not Refund.objects.exists()


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"shipping_amount": 5.0}, "shipping_amount"),
        ({"shipping_amount": "500"}, "shipping_amount"),
        ({"shipping_amount": True}, "shipping_amount"),
        ({"tax_amount": -1}, "tax_amount"),
        ({"tax_amount": 10.005}, "tax_amount"),
        ({"skus": [{"quantity": 1}]}, "skus"),
        ({"skus": [{"order_sku_id": 1, "external_id": "x", "quantity": 1}]}, "skus"),
        ({"skus": [{"external_id": "L", "quantity": 0}]}, "skus"),
        ({"skus": "all"}, "skus"),
        ({"reference": None}, "reference"),
        ({"reference": ""}, "reference"),
        ({"reference": "cancel:123"}, "reference"),
        ({"reference": "r" * 256}, "reference"),
        ({"reference": "RF\x00-1"}, "reference"),
        ({"platform_order_id": "1\x002"}, "platform_order_id"),
        ({"skus": [{"external_id": "L\x00", "quantity": 1}]}, "skus"),
        ({"reason_code": "BOGUS"}, "reason_code"),
        ({"platform_order_id": None}, "bag_id"),
        ({"bag_id": 1}, "bag_id"),
    ],
)
def test_invalid_notices_are_400_with_a_field_error(bag, key, overrides, field):
    response = post(notice(bag, **overrides), key)
    body = assert_error_shape(response, 400, "validation_failed")
    assert field in body["errors"], body
    assert not Refund.objects.exists()


# Well-formed notices the order cannot take (more than is left, a line not in it, another currency,
# nothing to refund): 422, same code and field errors.
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"shipping_amount": 501}, "shipping_amount"),
        ({"tax_amount": 801}, "tax_amount"),
        ({"sub_total_amount": 5001}, "sub_total_amount"),
        ({"skus": [{"external_id": "no-such-line", "quantity": 1}]}, "skus"),
        ({"currency": "EUR"}, "currency"),
        ({"skus": [], "shipping_amount": 0, "tax_amount": 0}, "amount"),
    ],
)
def test_notices_the_order_cannot_take_are_422_with_a_field_error(bag, key, overrides, field):
    response = post(notice(bag, **overrides), key)
    body = assert_error_shape(response, 422, "validation_failed")
    assert field in body["errors"], body
    assert not Refund.objects.exists()


def test_too_many_of_a_sku_is_422(bag, key):
    first = bag.skus.order_by("pk")[0]
    body = assert_error_shape(
        post(notice(bag, skus=[{"order_sku_id": first.pk, "quantity": 3}]), key), 422, "validation_failed"
    )
    assert "exceeds the 2 left" in str(body["errors"]["skus"])


# An empty body (sent without a content type by the test client: 415) is in tests/refunds/api/test_bodies.py.
@pytest.mark.parametrize("payload", ["{not json", "[]", '"text"'])
def test_malformed_bodies_are_400(bag, key, payload):
    response = post(payload, key)
    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_non_json_content_is_415(bag, key):
    response = Client().post(URL, "a=b", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {key.plaintext}")
    assert_error_shape(response, 415, "unsupported_media_type")


def test_get_is_405_in_the_error_shape(key):
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {key.plaintext}")
    assert_error_shape(response, 405, "method_not_allowed")

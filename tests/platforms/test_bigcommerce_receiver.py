"""BigCommerce bad input at the receiver: the secret header, malformed bodies, unknown connections, size."""

import json

import pytest
import responses
from django.test import override_settings

from platforms.models import InboundEvent
from tests.platforms.bigcommerce_store import (
    ORDER_URL,
    REFUND_CREATED,
    REFUNDS_URL,
    WEBHOOK_SECRET,
    order,
    partial_refund,
    refunds_body,
)
from tests.platforms.delivery import REMOVED, assert_rejected, deliver, fixture_text, post_webhook


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-secret", f"Basic {WEBHOOK_SECRET}", f"Bearer {WEBHOOK_SECRET}x", "Bearer é"],
    ids=["missing", "empty", "no-token", "wrong", "other-scheme", "longer", "non-ascii"],
)
def test_missing_or_wrong_secret_header_is_401(bc_store, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, secret=None, headers=headers), 401, "invalid_signature")


def test_connection_without_a_webhook_secret_accepts_nothing(bc_store):
    bc_store.connection.webhook_secret = ""
    bc_store.connection.save()
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, secret=""), 401, "invalid_signature")


def test_scheme_is_case_insensitive(bc_store):
    lower_case = {"Authorization": f"bearer {WEBHOOK_SECRET}"}
    assert post_webhook(bc_store, REFUND_CREATED, secret=None, headers=lower_case).status_code == 200


@pytest.mark.parametrize("body", [b'{"scope": "store/order/refund/created",', b"[1, 2]", b"\xff\xfe"])
def test_authentic_but_malformed_json_is_400(bc_store, body):
    assert_rejected(post_webhook(bc_store, body=body), 400, "malformed_payload")


@pytest.mark.parametrize("missing", ["hash", "scope"])
def test_authentic_but_without_hash_or_scope_is_400(bc_store, missing):
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, changes={missing: REMOVED}), 400, "malformed_payload")


def test_unknown_connection_is_404(bc_store):
    response = post_webhook(bc_store, REFUND_CREATED, url="/webhooks/bigcommerce/6b1e9d55-0d4b-4c3c-9d55-2f1a3b4c5d6e/")
    assert_rejected(response, 404, "not_found")


def test_another_platforms_slug_is_404(bc_store):
    response = post_webhook(bc_store, body=b"{}", secret=None, url=bc_store.url("woocommerce"))
    assert_rejected(response, 404, "not_found")


@override_settings(PLATFORM_WEBHOOK_MAX_BODY_BYTES=1000)
def test_oversized_body_is_413(bc_store):
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, changes={"padding": "x" * 2000}), 413, "payload_too_large")


def test_the_secret_header_is_never_stored(bc_store):
    with responses.RequestsMock() as mock:
        mock.get(ORDER_URL, json=order(14))
        mock.get(REFUNDS_URL, json=refunds_body(partial_refund()))
        deliver(bc_store, REFUND_CREATED)

    event = InboundEvent.objects.get()
    assert WEBHOOK_SECRET not in json.dumps(event.headers)
    assert event.body == fixture_text("bigcommerce", f"{REFUND_CREATED}.json")

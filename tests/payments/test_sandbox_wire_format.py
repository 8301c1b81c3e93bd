"""The Stripe sandbox, driven through the official SDK (its encoding, parsing and error classes run for real):
the wire format, object shapes and Stripe's error bodies.

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import pytest
import stripe

from stripe_sandbox import ledger
from stripe_sandbox.encoding import decode_params
from stripe_sandbox.transport import SandboxHTTPClient
from tests.payments.sandbox_requests import pay, refund

pytestmark = pytest.mark.django_db


def test_form_decoding_rebuilds_nested_params_and_keeps_metadata_a_map():
    decoded = decode_params(b"amount=500&metadata[0]=zero&metadata[refund_id]=12&expand[0]=a&expand[1]=b")

    assert decoded == {"amount": "500", "metadata": {"0": "zero", "refund_id": "12"}, "expand": ["a", "b"]}


def test_payment_intent_is_shaped_like_stripes(stripe_client):
    intent = pay(stripe_client, 12_345, metadata={"order_id": "42"}, receipt_email="shopper@example.com")

    assert intent.id.startswith("pi_") and len(intent.id) == 27
    assert intent.object == "payment_intent"
    assert intent.status == "succeeded"
    assert intent.amount == 12_345 and intent.amount_received == 12_345
    assert intent.currency == "usd"
    assert intent.latest_charge.startswith("ch_")
    assert intent.metadata.to_dict() == {"order_id": "42"}
    assert intent.receipt_email == "shopper@example.com"
    assert intent.last_response.headers["Request-Id"].startswith("req_")
    assert isinstance(intent.created, int)
    assert ledger.balance() == 12_345  # the platform holds the charged money


def test_retrieve_payment_intent_expands_the_charge(stripe_client):
    intent = pay(stripe_client)
    refund(stripe_client, intent.id, 2_500)

    fetched = stripe_client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})

    assert fetched.id == intent.id
    assert fetched.latest_charge.object == "charge"
    assert fetched.latest_charge.id == intent.latest_charge
    assert fetched.latest_charge.amount_refunded == 2_500
    assert fetched.latest_charge.refunded is False


def test_payment_intent_without_confirm_has_no_charge(stripe_client):
    intent = stripe_client.v1.payment_intents.create(params={"amount": 500, "currency": "usd"})

    assert intent.status == "requires_payment_method"
    assert intent.latest_charge is None
    with pytest.raises(stripe.InvalidRequestError) as caught:
        refund(stripe_client, intent.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_declined_card_raises_card_error_with_stripes_codes(stripe_client):
    with pytest.raises(stripe.CardError) as caught:
        pay(stripe_client, payment_method="pm_card_chargeDeclined")

    assert caught.value.http_status == 402
    assert caught.value.code == "card_declined"
    assert caught.value.error.decline_code == "generic_decline"
    assert ledger.balance() == 0


def test_missing_object_is_a_404_with_stripes_error_body(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.retrieve("re_doesnotexist")

    error = caught.value
    assert error.http_status == 404
    assert error.code == "resource_missing"
    assert error.error.type == "invalid_request_error"
    assert error.error.message == "No such refund: 're_doesnotexist'"
    assert error.request_id.startswith("req_")


def test_unknown_url_is_a_404(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.raw_request("get", "/v1/customers")

    assert caught.value.http_status == 404
    assert "Unrecognized request URL (GET: /v1/customers)" in caught.value.user_message


def test_unknown_parameter_is_rejected(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        pay(stripe_client, colour="violet")

    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "colour"


def test_invalid_api_key_raises_authentication_error():
    client = stripe.StripeClient("sk_live_not_a_test_key", http_client=SandboxHTTPClient(), max_network_retries=0)

    with pytest.raises(stripe.AuthenticationError) as caught:
        client.v1.balance.retrieve()

    assert caught.value.http_status == 401
    assert "Invalid API Key provided" in caught.value.user_message
    assert "not_a_test" not in caught.value.user_message  # the secret is masked

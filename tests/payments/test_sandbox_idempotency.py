"""The Stripe sandbox's idempotency keys, driven through the official SDK: replays, conflicts, scoping, expiry.

Concurrent requests under one key are in test_sandbox_concurrency.py.

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import pytest
import stripe
from django.test import override_settings

from stripe_sandbox import ledger
from stripe_sandbox.encoding import fingerprint
from stripe_sandbox.models import SandboxIdempotencyKey
from tests.payments.sandbox_requests import pay, refund, transfer

pytestmark = pytest.mark.django_db


def test_same_key_and_params_replays_the_first_response(stripe_client):
    intent = pay(stripe_client)

    first = refund(stripe_client, intent.id, 1_000, key="k-1")
    second = refund(stripe_client, intent.id, 1_000, key="k-1")

    assert second.id == first.id
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert [r.stripe_id for r in ledger.refunds_for(intent.id)] == [first.id]
    assert ledger.call_count("/v1/refunds") == 2


def test_same_key_with_other_params_is_an_idempotency_error(stripe_client):
    intent = pay(stripe_client)
    refund(stripe_client, intent.id, 1_000, key="k-1")

    with pytest.raises(stripe.IdempotencyError) as caught:
        refund(stripe_client, intent.id, 2_000, key="k-1")

    assert caught.value.http_status == 400
    assert caught.value.error.type == "idempotency_error"
    assert len(ledger.refunds_for(intent.id)) == 1


def test_same_key_on_another_endpoint_is_an_idempotency_error(stripe_client, merchant_account):
    pay(stripe_client, key="shared")

    with pytest.raises(stripe.IdempotencyError):
        transfer(stripe_client, merchant_account, key="shared")


def test_keys_are_scoped_per_account(stripe_client, merchant_account):
    on_platform = pay(stripe_client, key="k-scope")

    on_connected = stripe_client.v1.payment_intents.create(
        params={"amount": 700, "currency": "usd"},
        options={"idempotency_key": "k-scope", "stripe_account": merchant_account},
    )

    assert on_connected.id != on_platform.id
    assert sorted(SandboxIdempotencyKey.objects.filter(key="k-scope").values_list("account_scope", flat=True)) == [
        "",
        merchant_account,
    ]


def test_a_request_that_fails_validation_stores_nothing(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.payment_intents.create(
            params={"amount": "ten", "currency": "usd"}, options={"idempotency_key": "k-fix"}
        )
    assert caught.value.code == "parameter_invalid_integer"
    assert not SandboxIdempotencyKey.objects.filter(key="k-fix").exists()

    fixed = stripe_client.v1.payment_intents.create(
        params={"amount": 1_000, "currency": "usd"}, options={"idempotency_key": "k-fix"}
    )

    assert fixed.amount == 1_000


def test_a_business_error_is_stored_and_replayed(stripe_client):
    intent = pay(stripe_client, 1_000)

    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            refund(stripe_client, intent.id, 5_000, key="k-too-much")
        assert caught.value.code == "amount_too_large"

    assert ledger.calls("/v1/refunds")[-1].replayed is True
    assert ledger.refunds_for(intent.id) == []


def test_forgotten_keys_execute_again(stripe_client):
    intent = pay(stripe_client)
    first = refund(stripe_client, intent.id, 1_000, key="k-old")

    assert ledger.forget_idempotency_keys() >= 2
    second = refund(stripe_client, intent.id, 1_000, key="k-old")

    assert second.id != first.id
    assert [r.amount for r in ledger.refunds_for(intent.id)] == [1_000, 1_000]
    assert ledger.payment_intent(intent.id).amount_refunded == 2_000


def test_key_left_executing_by_a_dead_process_is_taken_over(stripe_client):
    intent = pay(stripe_client)
    # What a worker killed mid-request leaves behind: the key claimed, its transaction rolled back.
    same_request = fingerprint("POST", "/v1/refunds", {"payment_intent": intent.id, "amount": "1000"})
    SandboxIdempotencyKey.objects.create(
        key="k-dead", method="POST", path="/v1/refunds", fingerprint=same_request, account_scope=""
    )
    with pytest.raises(stripe.APIError) as caught:  # still fresh: another request may be running it
        refund(stripe_client, intent.id, 1_000, key="k-dead")
    assert caught.value.http_status == 409

    with override_settings(STRIPE_SANDBOX_ABANDONED_KEY_SECONDS=0):
        created = refund(stripe_client, intent.id, 1_000, key="k-dead")

    assert [r.stripe_id for r in ledger.refunds_for(intent.id)] == [created.id]

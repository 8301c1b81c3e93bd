"""The Stripe sandbox's injected faults, driven through the official SDK: what each stores under the key,
which calls they hit, the call log, latency, crashes and a lost database.

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import time
from dataclasses import replace

import pytest
import stripe
from django.db import OperationalError
from django.test import override_settings

from stripe_sandbox import ledger, transport
from stripe_sandbox.models import FaultKind, SandboxIdempotencyKey
from tests.payments.sandbox_requests import pay, refund, reverse, transfer

pytestmark = pytest.mark.django_db


NOTHING_STORED_FAULTS = [
    (FaultKind.CONNECTION_ERROR, stripe.APIConnectionError, None),
    (FaultKind.TIMEOUT, stripe.APIConnectionError, None),
    (FaultKind.HTTP_429, stripe.RateLimitError, 429),
    (FaultKind.HTTP_409, stripe.APIError, 409),
    (FaultKind.HTTP_503, stripe.APIError, 503),
]


@pytest.mark.parametrize(("kind", "error_class", "status"), NOTHING_STORED_FAULTS)
def test_fault_before_idempotency_moves_nothing_and_same_key_retry_succeeds(stripe_client, kind, error_class, status):
    intent = pay(stripe_client)
    ledger.inject_fault(kind, path="/v1/refunds")

    with pytest.raises(error_class) as caught:
        refund(stripe_client, intent.id, 1_000, key="k-retry")

    assert caught.value.http_status == status
    assert ledger.refunds_for(intent.id) == []
    if kind in (FaultKind.CONNECTION_ERROR, FaultKind.TIMEOUT):
        assert caught.value.should_retry is True
    retried = refund(stripe_client, intent.id, 1_000, key="k-retry")
    assert [r.stripe_id for r in ledger.refunds_for(intent.id)] == [retried.id]
    assert ledger.faults_remaining() == 0


def test_injected_409_carries_the_idempotency_key_in_use_code(stripe_client):
    ledger.inject_fault(FaultKind.HTTP_409)

    with pytest.raises(stripe.APIError) as caught:
        pay(stripe_client)

    assert caught.value.error.code == "idempotency_key_in_use"


def test_500_is_stored_under_the_key_and_replayed(stripe_client):
    intent = pay(stripe_client)
    ledger.inject_fault(FaultKind.HTTP_500, path="/v1/refunds")

    for _ in range(3):
        with pytest.raises(stripe.APIError) as caught:
            refund(stripe_client, intent.id, 1_000, key="k-500")
        assert caught.value.http_status == 500

    assert ledger.refunds_for(intent.id) == []
    assert ledger.faults_remaining() == 0  # one injected 500, replayed twice from the key
    fresh = refund(stripe_client, intent.id, 1_000, key="k-500-b")
    assert [r.stripe_id for r in ledger.refunds_for(intent.id)] == [fresh.id]


def test_lost_response_then_same_key_retry_yields_exactly_one_refund(stripe_client):
    intent = pay(stripe_client)
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path="/v1/refunds")

    with pytest.raises(stripe.APIConnectionError):
        refund(stripe_client, intent.id, 3_000, key="k-lost")
    created = ledger.refunds_for(intent.id)
    assert [r.amount for r in created] == [3_000]  # the effect happened

    retried = refund(stripe_client, intent.id, 3_000, key="k-lost")

    assert retried.id == created[0].stripe_id
    assert retried.status == "succeeded"
    assert len(ledger.refunds_for(intent.id)) == 1
    assert ledger.payment_intent(intent.id).amount_refunded == 3_000


def test_fault_hits_exactly_the_next_n_matching_calls(stripe_client):
    ledger.inject_fault(FaultKind.HTTP_429, times=2)

    outcomes = []
    for index in range(3):
        try:
            pay(stripe_client, key=f"k-{index}")
            outcomes.append("ok")
        except stripe.RateLimitError:
            outcomes.append("429")

    assert outcomes == ["429", "429", "ok"]


def test_fault_path_and_method_filters(stripe_client, merchant_account):
    intent = pay(stripe_client)
    tr = transfer(stripe_client, merchant_account, source_transaction=intent.latest_charge)
    ledger.inject_fault(FaultKind.HTTP_500, path="/v1/transfers/*/reversals")
    ledger.inject_fault(FaultKind.CONNECTION_ERROR, path="/v1/refunds", method="GET")

    refunded = refund(stripe_client, intent.id, 1_000)  # neither fault matches a refund POST
    with pytest.raises(stripe.APIConnectionError):
        stripe_client.v1.refunds.list(params={"payment_intent": intent.id})
    with pytest.raises(stripe.APIError):
        reverse(stripe_client, tr.id, 1_000)

    assert refunded.status == "succeeded"
    assert ledger.reversals_for(tr.id) == []
    assert ledger.faults_remaining() == 0


def test_unknown_fault_kind_and_bad_times_are_refused():
    with pytest.raises(ValueError, match="Unknown fault kind"):
        ledger.inject_fault("meteor")
    with pytest.raises(ValueError, match="at least 1"):
        ledger.inject_fault(FaultKind.HTTP_500, times=0)


def test_clear_faults_removes_pending_faults(stripe_client):
    ledger.inject_fault(FaultKind.HTTP_500, times=5)

    assert ledger.clear_faults() == 1
    assert pay(stripe_client).status == "succeeded"


def test_calls_are_recorded_with_their_outcome(stripe_client):
    ledger.inject_fault(FaultKind.CONNECTION_ERROR)
    with pytest.raises(stripe.APIConnectionError):
        pay(stripe_client)
    pay(stripe_client)

    recorded = ledger.calls("/v1/payment_intents")
    assert [(c.status_code, c.fault) for c in recorded] == [(0, "connection_error"), (200, "")]
    assert ledger.call_count("/v1/payment_intents", method="POST") == 2
    assert ledger.call_count("/v1/refunds") == 0


@override_settings(STRIPE_SANDBOX_LATENCY_MS=60)
def test_latency_setting_delays_each_call(stripe_client):
    started = time.monotonic()
    stripe_client.v1.balance.retrieve()
    stripe_client.v1.balance.retrieve()

    assert time.monotonic() - started >= 0.12


def test_a_crash_inside_an_endpoint_is_a_stored_500(stripe_client, monkeypatch):
    intent = pay(stripe_client)
    endpoint, _ = transport.route("POST", "/v1/refunds")

    def crash(call, params):
        raise RuntimeError("bug in the emulated endpoint")

    monkeypatch.setattr(transport, "route", lambda method, path: (replace(endpoint, execute=crash), {}))
    for _ in range(2):
        with pytest.raises(stripe.APIError) as caught:
            refund(stripe_client, intent.id, 1_000, key="k-crash")
        assert caught.value.http_status == 500

    assert SandboxIdempotencyKey.objects.get(key="k-crash").response_status == 500
    assert ledger.refunds_for(intent.id) == []


def test_losing_the_database_mid_request_is_a_connection_error(stripe_client, monkeypatch):
    intent = pay(stripe_client)

    def storage_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(transport.idempotency, "store", storage_gone)
    with pytest.raises(stripe.APIConnectionError) as caught:
        refund(stripe_client, intent.id, 1_000, key="k-db")

    assert caught.value.should_retry is True

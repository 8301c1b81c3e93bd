"""The Stripe sandbox, driven through the official SDK (its encoding, parsing and error classes run for real).

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import threading
import time
from dataclasses import replace

import pytest
import stripe
from django.db import OperationalError, connection
from django.test import override_settings

from stripe_sandbox import ledger, transport
from stripe_sandbox.encoding import decode_params, fingerprint
from stripe_sandbox.models import FaultKind, SandboxIdempotencyKey
from stripe_sandbox.transport import SandboxHTTPClient

pytestmark = pytest.mark.django_db


def pay(client, amount=10_000, *, key="pay-1", currency="usd", payment_method="pm_card_visa", **extra):
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "confirm": True,
            "payment_method": payment_method,
            **extra,
        },
        options={"idempotency_key": key},
    )


def refund(client, pi_id, amount=None, *, key="refund-1", metadata=None):
    params = {"payment_intent": pi_id, "metadata": metadata or {}}
    if amount is not None:
        params["amount"] = amount
    return client.v1.refunds.create(params=params, options={"idempotency_key": key})


def transfer(client, destination, amount=6_000, *, key="transfer-1", **extra):
    return client.v1.transfers.create(
        params={"amount": amount, "currency": "usd", "destination": destination, **extra},
        options={"idempotency_key": key},
    )


def reverse(client, transfer_id, amount=None, *, key="reverse-1"):
    params = {"metadata": {"refund_id": "7"}}
    if amount is not None:
        params["amount"] = amount
    return client.v1.transfers.reversals.create(transfer_id, params=params, options={"idempotency_key": key})


# --- wire format ---


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


# --- idempotency ---


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


# --- faults ---

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


# --- refunds ---


def test_refund_defaults_to_the_unrefunded_remainder_and_rejects_more(stripe_client):
    intent = pay(stripe_client, 10_000)
    partial = refund(stripe_client, intent.id, 4_000, key="r-1", metadata={"refund_id": "1"})

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        refund(stripe_client, intent.id, 6_001, key="r-2")
    rest = refund(stripe_client, intent.id, key="r-3")
    with pytest.raises(stripe.InvalidRequestError) as again:
        refund(stripe_client, intent.id, 1, key="r-4")

    assert partial.object == "refund" and partial.id.startswith("re_")
    assert partial.charge == intent.latest_charge and partial.payment_intent == intent.id
    assert partial.metadata.to_dict() == {"refund_id": "1"}
    assert too_much.value.code == "amount_too_large"
    assert too_much.value.param == "amount"
    assert "greater than unrefunded amount on charge ($60.00)" in too_much.value.user_message
    assert rest.amount == 6_000
    assert again.value.code == "charge_already_refunded"
    assert [r.amount for r in ledger.refunds_for(intent.id)] == [4_000, 6_000]
    assert ledger.balance() == 0


def test_refund_by_charge_id(stripe_client):
    intent = pay(stripe_client, 5_000)

    created = stripe_client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 500})

    assert created.payment_intent == intent.id
    assert ledger.payment_intent(intent.id).amount_refunded == 500


def test_refund_needs_a_payment_intent_or_charge(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.refunds.create(params={"amount": 500})

    assert caught.value.code == "parameter_missing"


def test_refund_of_unknown_payment_intent(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        refund(stripe_client, "pi_missing")

    assert caught.value.http_status == 400
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "payment_intent"


def test_list_and_retrieve_refunds_page_newest_first(stripe_client):
    intent = pay(stripe_client)
    other = pay(stripe_client, key="pay-2")
    ids = [refund(stripe_client, intent.id, 100, key=f"r-{n}").id for n in range(3)]
    refund(stripe_client, other.id, 100, key="r-other")

    first_page = stripe_client.v1.refunds.list(params={"payment_intent": intent.id, "limit": 2})
    everything = list(first_page.auto_paging_iter())

    assert [r.id for r in first_page.data] == [ids[2], ids[1]]
    assert first_page.has_more is True
    assert [r.id for r in everything] == list(reversed(ids))
    assert stripe_client.v1.refunds.retrieve(ids[0]).amount == 100


def test_charge_already_refunded_fault(stripe_client):
    intent = pay(stripe_client)
    ledger.inject_fault(FaultKind.CHARGE_ALREADY_REFUNDED)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        refund(stripe_client, intent.id, 1_000)

    assert caught.value.code == "charge_already_refunded"
    assert ledger.refunds_for(intent.id) == []


@pytest.mark.parametrize("how", ["fault", "dispute", "test_card"])
def test_disputed_charge_cannot_be_refunded(stripe_client, how):
    payment_method = "pm_card_createDispute" if how == "test_card" else "pm_card_visa"
    intent = pay(stripe_client, payment_method=payment_method)
    if how == "fault":
        ledger.inject_fault(FaultKind.CHARGE_DISPUTED, path="/v1/refunds")
    elif how == "dispute":
        ledger.dispute_charge(intent.id)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        refund(stripe_client, intent.id, 1_000)

    assert caught.value.code == "charge_disputed"
    assert ledger.refunds_for(intent.id) == []


@pytest.mark.parametrize("how", ["fault", "test_card"])
def test_refund_that_fails_asynchronously(stripe_client, how):
    payment_method = "pm_card_refundFail" if how == "test_card" else "pm_card_visa"
    intent = pay(stripe_client, 10_000, payment_method=payment_method)
    if how == "fault":
        ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC)

    created = refund(stripe_client, intent.id, 10_000, key="k-async")
    assert created.status == "pending"
    assert ledger.payment_intent(intent.id).amount_refunded == 10_000

    later = stripe_client.v1.refunds.retrieve(created.id)

    assert later.status == "failed"
    assert later.failure_reason == "expired_or_canceled_card"
    assert ledger.payment_intent(intent.id).amount_refunded == 0  # refundable again
    assert ledger.balance() == 10_000
    assert refund(stripe_client, intent.id, 10_000, key="k-async").status == "pending"  # stored reply


def test_asynchronous_failure_also_shows_in_lists(stripe_client):
    intent = pay(stripe_client)
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC)
    created = refund(stripe_client, intent.id, 2_000)

    listed = stripe_client.v1.refunds.list(params={"payment_intent": intent.id})

    assert [(r.id, r.status) for r in listed.data] == [(created.id, "failed")]
    assert [r.status for r in ledger.refunds_for(intent.id)] == ["failed"]


# --- transfers, reversals, balances ---


def test_transfer_credits_the_connected_account(stripe_client, merchant_account):
    intent = pay(stripe_client)

    tr = transfer(
        stripe_client,
        merchant_account,
        6_000,
        source_transaction=intent.latest_charge,
        transfer_group="order-1",
        metadata={"bag_id": "3"},
    )

    assert tr.object == "transfer" and tr.id.startswith("tr_")
    assert (tr.amount, tr.amount_reversed, tr.reversed) == (6_000, 0, False)
    assert tr.destination == merchant_account
    assert tr.source_transaction == intent.latest_charge
    assert tr.transfer_group == "order-1"
    assert ledger.balance(merchant_account) == 6_000
    assert ledger.balance() == 4_000


def test_transfer_to_unknown_account_or_charge_is_refused(stripe_client, merchant_account):
    with pytest.raises(stripe.InvalidRequestError) as no_account:
        transfer(stripe_client, "acct_nobody", key="t-1")
    with pytest.raises(stripe.InvalidRequestError) as no_charge:
        transfer(stripe_client, merchant_account, key="t-2", source_transaction="ch_nothing")

    assert (no_account.value.code, no_account.value.param) == ("resource_missing", "destination")
    assert (no_charge.value.code, no_charge.value.param) == ("resource_missing", "source_transaction")
    assert ledger.transfers_to(merchant_account) == []


def test_reversals_reduce_the_connected_balance_and_stop_at_the_transfer_amount(stripe_client, merchant_account):
    tr = transfer(stripe_client, merchant_account, 6_000)

    first = reverse(stripe_client, tr.id, 2_500, key="v-1")
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        reverse(stripe_client, tr.id, 3_501, key="v-2")
    rest = reverse(stripe_client, tr.id, key="v-3")
    with pytest.raises(stripe.InvalidRequestError) as done:
        reverse(stripe_client, tr.id, 1, key="v-4")

    assert first.object == "transfer_reversal" and first.id.startswith("trr_")
    assert first.transfer == tr.id and first.metadata.to_dict() == {"refund_id": "7"}
    assert too_much.value.code == "amount_too_large"
    assert rest.amount == 3_500
    assert done.value.code == "amount_too_large"
    fetched = stripe_client.v1.transfers.retrieve(tr.id)
    assert (fetched.amount_reversed, fetched.reversed) == (6_000, True)
    assert [r.id for r in fetched.reversals.data] == [rest.id, first.id]
    assert [r.amount for r in ledger.reversals_for(tr.id)] == [2_500, 3_500]
    assert ledger.balance(merchant_account) == 0
    assert ledger.balance() == 0  # -6000 transferred, +6000 reversed


def test_reversal_list_endpoint(stripe_client, merchant_account):
    tr = transfer(stripe_client, merchant_account, 6_000)
    ids = [reverse(stripe_client, tr.id, 100, key=f"v-{n}").id for n in range(3)]

    listed = stripe_client.v1.transfers.reversals.list(tr.id, params={"limit": 2})

    assert [r.id for r in listed.auto_paging_iter()] == list(reversed(ids))
    assert stripe_client.v1.transfers.reversals.retrieve(tr.id, ids[0]).amount == 100


@pytest.mark.parametrize("how", ["real_balance", "fault"])
def test_reversal_with_insufficient_connected_balance(stripe_client, merchant_account, how):
    tr = transfer(stripe_client, merchant_account, 6_000)
    if how == "real_balance":
        ledger.set_balance(merchant_account, 1_000)  # the merchant paid most of it out
    else:
        ledger.inject_fault(FaultKind.BALANCE_INSUFFICIENT, path="/v1/transfers/*/reversals")

    with pytest.raises(stripe.InvalidRequestError) as caught:
        reverse(stripe_client, tr.id, 2_000)

    assert caught.value.code == "balance_insufficient"
    assert ledger.reversals_for(tr.id) == []
    assert ledger.transfer(tr.id).amount_reversed == 0


def test_balance_of_platform_and_connected_account(stripe_client):
    account = ledger.create_account(account_id="acct_merchant0001", balance=2_500, currency="EUR")

    connected = stripe_client.v1.balance.retrieve(options={"stripe_account": account})
    platform = stripe_client.v1.balance.retrieve()

    assert connected.object == "balance"
    assert [(b.amount, b.currency) for b in connected.available] == [(2_500, "eur")]
    assert [(b.amount, b.currency) for b in platform.available] == [(0, "usd")]


def test_balance_of_an_unknown_account_is_forbidden(stripe_client):
    with pytest.raises(stripe.PermissionError) as caught:
        stripe_client.v1.balance.retrieve(options={"stripe_account": "acct_stranger"})

    assert caught.value.http_status == 403


def test_reset_empties_the_sandbox(stripe_client, merchant_account):
    pay(stripe_client)
    ledger.inject_fault(FaultKind.HTTP_500)

    ledger.reset()

    assert ledger.call_count() == 0
    assert ledger.faults_remaining() == 0
    assert ledger.balance() == 0


# --- concurrency (threads, each with its own database connection) ---


@pytest.mark.django_db(transaction=True)
def test_same_key_while_the_first_request_executes_is_409_then_replays(stripe_client):
    intent = pay(stripe_client)
    ledger.inject_fault(FaultKind.STALL, path="/v1/refunds", stall_seconds=1.5)
    first: dict = {}

    def slow_refund():
        try:
            first["refund"] = refund(stripe_client, intent.id, 1_000, key="k-busy")
        finally:
            connection.close()

    worker = threading.Thread(target=slow_refund)
    worker.start()
    deadline = time.monotonic() + 5
    while not SandboxIdempotencyKey.objects.filter(key="k-busy").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(stripe.APIError) as busy:
        refund(stripe_client, intent.id, 1_000, key="k-busy")
    worker.join(timeout=10)
    replayed = refund(stripe_client, intent.id, 1_000, key="k-busy")

    assert busy.value.http_status == 409
    assert busy.value.error.code == "idempotency_key_in_use"
    assert replayed.id == first["refund"].id
    assert len(ledger.refunds_for(intent.id)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_same_key_refunds_create_one_refund(stripe_client, in_threads):
    intent = pay(stripe_client)

    results = in_threads(8, lambda _: refund(stripe_client, intent.id, 1_000, key="k-race").id)

    created = ledger.refunds_for(intent.id)
    assert len(created) == 1
    for result in results:
        if isinstance(result, Exception):
            assert isinstance(result, stripe.APIError) and result.http_status == 409, result
        else:
            assert result == created[0].stripe_id
    assert ledger.payment_intent(intent.id).amount_refunded == 1_000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_consume_exactly_n_faults(stripe_client, in_threads):
    ledger.inject_fault(FaultKind.HTTP_429, times=3)

    results = in_threads(10, lambda _: stripe_client.v1.balance.retrieve().object)

    assert sum(isinstance(r, stripe.RateLimitError) for r in results) == 3
    assert results.count("balance") == 7
    assert ledger.faults_remaining() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_reversals_never_exceed_the_transfer(stripe_client, merchant_account, in_threads):
    tr = transfer(stripe_client, merchant_account, 6_000)

    results = in_threads(8, lambda n: reverse(stripe_client, tr.id, 1_000, key=f"v-race-{n}").id)

    succeeded = [r for r in results if isinstance(r, str)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(succeeded) == 6
    assert all(isinstance(e, stripe.InvalidRequestError) and e.code == "amount_too_large" for e in failed)
    assert sum(r.amount for r in ledger.reversals_for(tr.id)) == 6_000
    assert ledger.balance(merchant_account) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_different_key_refunds_never_exceed_the_charge(stripe_client, in_threads):
    intent = pay(stripe_client, 5_000)

    results = in_threads(8, lambda n: refund(stripe_client, intent.id, 1_000, key=f"r-race-{n}").id)

    assert sum(isinstance(r, str) for r in results) == 5
    assert sum(r.amount for r in ledger.refunds_for(intent.id)) == 5_000
    assert ledger.payment_intent(intent.id).amount_refunded == 5_000

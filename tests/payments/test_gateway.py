"""StripeGateway over the real SDK and the sandbox: results, error classes, idempotency, faults."""

import pytest
import stripe
from django.test import override_settings

from payments import gateway as gateway_module
from payments.gateway import (
    GatewayError,
    IdempotencyConflictError,
    PaymentIntentResult,
    PermanentGatewayError,
    RefundResult,
    ReversalResult,
    StripeGateway,
    TransferResult,
    TransientGatewayError,
    get_gateway,
)
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from stripe_sandbox.transport import SandboxHTTPClient

pytestmark = pytest.mark.django_db


def test_create_and_retrieve_payment_intent(gateway):
    created = gateway.create_payment_intent(
        amount=2_599,
        currency="EUR",
        idempotency_key="order-1-charge",
        metadata={"order_id": "1"},
        receipt_email="shopper@example.com",
    )

    assert isinstance(created, PaymentIntentResult)
    assert created.id.startswith("pi_") and created.charge_id.startswith("ch_")
    assert (created.amount, created.currency, created.status, created.amount_refunded) == (
        2_599,
        "EUR",
        "succeeded",
        0,
    )
    stored = ledger.payment_intent(created.id)
    assert (stored.currency, stored.metadata, stored.receipt_email) == ("eur", {"order_id": "1"}, "shopper@example.com")

    gateway.refund_payment(payment_intent_id=created.id, amount=599, idempotency_key="r-1")
    assert gateway.retrieve_payment_intent(created.id).amount_refunded == 599


def test_transfer_reverse_and_list(gateway, paid_intent, merchant_account):
    transfer = gateway.create_transfer(
        amount=6_000,
        currency="USD",
        destination=merchant_account,
        idempotency_key="bag-1-transfer-merchant",
        source_transaction=paid_intent.charge_id,
        transfer_group="order-1",
        metadata={"bag_id": "1"},
    )
    reversal = gateway.reverse_transfer(
        transfer_id=transfer.id, amount=1_500, idempotency_key="refund-1-merchant", metadata={"refund_id": "1"}
    )

    assert transfer == TransferResult(
        id=transfer.id, amount=6_000, currency="USD", destination=merchant_account, amount_reversed=0
    )
    assert reversal == ReversalResult(
        id=reversal.id, transfer_id=transfer.id, amount=1_500, currency="USD", metadata={"refund_id": "1"}
    )
    assert gateway.retrieve_transfer(transfer.id).amount_reversed == 1_500
    assert gateway.list_transfer_reversals(transfer.id) == [reversal]
    assert ledger.balance(merchant_account) == 4_500


def test_list_transfer_reversals_reads_every_page(gateway, funded_transfer):
    ids = [
        gateway.reverse_transfer(transfer_id=funded_transfer.id, amount=10, idempotency_key=f"v-{n}").id
        for n in range(105)
    ]

    listed = gateway.list_transfer_reversals(funded_transfer.id)

    assert [r.id for r in listed] == list(reversed(ids))


def test_refund_retrieve_and_list(gateway, paid_intent):
    refund = gateway.refund_payment(
        payment_intent_id=paid_intent.id, amount=2_500, idempotency_key="refund-9-shopper", metadata={"step": "x"}
    )

    assert refund == RefundResult(
        id=refund.id,
        payment_intent_id=paid_intent.id,
        amount=2_500,
        currency="USD",
        status="succeeded",
        failure_reason="",
        metadata={"step": "x"},
    )
    assert gateway.retrieve_refund(refund.id) == refund
    assert gateway.list_refunds(payment_intent_id=paid_intent.id) == [refund]


MUTATIONS = {
    "create_payment_intent": lambda g, key: g.create_payment_intent(amount=100, currency="USD", idempotency_key=key),
    "create_transfer": lambda g, key: g.create_transfer(
        amount=100, currency="USD", destination="acct_x", idempotency_key=key
    ),
    "reverse_transfer": lambda g, key: g.reverse_transfer(transfer_id="tr_x", amount=100, idempotency_key=key),
    "refund_payment": lambda g, key: g.refund_payment(payment_intent_id="pi_x", amount=100, idempotency_key=key),
}


@pytest.mark.parametrize("method", sorted(MUTATIONS))
@pytest.mark.parametrize("key", ["", "   ", None, "k" * 256])
def test_every_mutation_requires_an_idempotency_key(gateway, method, key):
    with pytest.raises(ValueError, match="idempotency"):
        MUTATIONS[method](gateway, key)

    assert ledger.call_count() == 0  # refused before anything reached Stripe


@pytest.mark.parametrize("amount", [0, -5, 10.5, "100", True])
def test_amount_must_be_positive_minor_units(gateway, amount):
    with pytest.raises(ValueError, match="amount"):
        gateway.refund_payment(payment_intent_id="pi_x", amount=amount, idempotency_key="k")

    assert ledger.call_count() == 0


@pytest.mark.parametrize("currency", ["US", "usd1", "", None])
def test_currency_must_be_an_iso_code(gateway, currency):
    with pytest.raises(ValueError, match="currency"):
        gateway.create_payment_intent(amount=100, currency=currency, idempotency_key="k")


def test_same_key_replays_the_same_refund(gateway, paid_intent):
    first = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")
    second = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")

    assert second == first
    assert len(ledger.refunds_for(paid_intent.id)) == 1


def test_same_key_with_another_amount_is_an_idempotency_conflict(gateway, paid_intent, caplog):
    gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")

    with pytest.raises(IdempotencyConflictError) as caught:
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=2_000, idempotency_key="refund-1")

    # Not a definitive answer about the step (the key's first use may hold an object): transient,
    # so the engine looks it up; never a permanent failure recorded against the shopper.
    assert isinstance(caught.value, TransientGatewayError)
    assert not isinstance(caught.value, PermanentGatewayError)
    assert [r.levelname for r in caplog.records if r.name == "payments.gateway"] == ["ERROR"]
    assert (caught.value.error_type, caught.value.http_status) == ("idempotency_error", 400)
    assert "same parameters" in caught.value.message
    assert len(ledger.refunds_for(paid_intent.id)) == 1


TRANSIENT_FAULTS = [
    (FaultKind.CONNECTION_ERROR, None, None, "api_connection_error"),
    (FaultKind.TIMEOUT, None, None, "api_connection_error"),
    (FaultKind.HTTP_429, 429, "rate_limit", "invalid_request_error"),
    (FaultKind.HTTP_409, 409, "idempotency_key_in_use", "invalid_request_error"),
    (FaultKind.HTTP_500, 500, None, "api_error"),
    (FaultKind.HTTP_503, 503, None, "api_error"),
]


@pytest.mark.parametrize(("kind", "status", "code", "error_type"), TRANSIENT_FAULTS)
def test_transient_faults_raise_transient_gateway_error(gateway, paid_intent, kind, status, code, error_type):
    ledger.inject_fault(kind, path="/v1/refunds")

    with pytest.raises(TransientGatewayError) as caught:
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")

    error = caught.value
    assert (error.http_status, error.code, error.error_type) == (status, code, error_type)
    assert error.message
    assert ledger.refunds_for(paid_intent.id) == []


@pytest.mark.parametrize("kind", [FaultKind.CONNECTION_ERROR, FaultKind.HTTP_429, FaultKind.HTTP_409])
def test_retry_with_the_same_key_after_a_transient_fault_refunds_once(gateway, paid_intent, kind):
    ledger.inject_fault(kind, times=2, path="/v1/refunds")
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(
                gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1").id
            )
        except TransientGatewayError:
            outcomes.append("retry")

    assert outcomes[:2] == ["retry", "retry"]
    assert [r.stripe_id for r in ledger.refunds_for(paid_intent.id)] == [outcomes[2]]


def test_lost_response_then_same_key_retry_refunds_exactly_once(gateway, paid_intent):
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path="/v1/refunds")

    with pytest.raises(TransientGatewayError) as lost:
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=4_000, idempotency_key="refund-5")
    retried = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=4_000, idempotency_key="refund-5")

    assert lost.value.error_type == "api_connection_error"
    assert retried.status == "succeeded"
    assert [(r.stripe_id, r.amount) for r in ledger.refunds_for(paid_intent.id)] == [(retried.id, 4_000)]
    assert gateway.retrieve_payment_intent(paid_intent.id).amount_refunded == 4_000


def test_lost_response_is_found_by_listing_with_metadata(gateway, paid_intent):
    """What the engine does before minting a new key: look the object up by its metadata."""
    ledger.inject_fault(FaultKind.RESPONSE_LOST, path="/v1/refunds")
    with pytest.raises(TransientGatewayError):
        gateway.refund_payment(
            payment_intent_id=paid_intent.id, amount=4_000, idempotency_key="refund-6", metadata={"refund_id": "6"}
        )

    found = [r for r in gateway.list_refunds(payment_intent_id=paid_intent.id) if r.metadata.get("refund_id") == "6"]

    assert [r.amount for r in found] == [4_000]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (FaultKind.CHARGE_ALREADY_REFUNDED, "charge_already_refunded"),
        (FaultKind.CHARGE_DISPUTED, "charge_disputed"),
    ],
)
def test_refund_business_faults_are_permanent(gateway, paid_intent, kind, code):
    ledger.inject_fault(kind)

    with pytest.raises(PermanentGatewayError) as caught:
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")

    assert (caught.value.code, caught.value.http_status, caught.value.error_type) == (
        code,
        400,
        "invalid_request_error",
    )
    assert not isinstance(caught.value, IdempotencyConflictError)
    assert ledger.refunds_for(paid_intent.id) == []


def test_over_refund_is_permanent_and_moves_nothing(gateway, paid_intent):
    gateway.refund_payment(payment_intent_id=paid_intent.id, amount=7_000, idempotency_key="refund-1")

    with pytest.raises(PermanentGatewayError) as caught:
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=3_001, idempotency_key="refund-2")

    assert caught.value.code == "amount_too_large"
    assert sum(r.amount for r in ledger.refunds_for(paid_intent.id)) == 7_000


def test_fully_refunded_charge_is_charge_already_refunded(gateway, paid_intent):
    gateway.refund_payment(payment_intent_id=paid_intent.id, amount=10_000, idempotency_key="refund-1")

    with pytest.raises(PermanentGatewayError) as caught:
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1, idempotency_key="refund-2")

    assert caught.value.code == "charge_already_refunded"


def test_over_reversal_is_permanent(gateway, funded_transfer):
    gateway.reverse_transfer(transfer_id=funded_transfer.id, amount=5_000, idempotency_key="v-1")

    with pytest.raises(PermanentGatewayError) as caught:
        gateway.reverse_transfer(transfer_id=funded_transfer.id, amount=1_001, idempotency_key="v-2")

    assert caught.value.code == "amount_too_large"
    assert sum(r.amount for r in ledger.reversals_for(funded_transfer.id)) == 5_000


@pytest.mark.parametrize("how", ["real_balance", "fault"])
def test_insufficient_connected_balance_is_permanent(gateway, funded_transfer, merchant_account, how):
    if how == "real_balance":
        ledger.set_balance(merchant_account, 500)
    else:
        ledger.inject_fault(FaultKind.BALANCE_INSUFFICIENT)

    with pytest.raises(PermanentGatewayError) as caught:
        gateway.reverse_transfer(transfer_id=funded_transfer.id, amount=1_000, idempotency_key="v-1")

    assert caught.value.code == "balance_insufficient"
    assert ledger.reversals_for(funded_transfer.id) == []


def test_reversal_of_unknown_transfer_is_permanent(gateway):
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.reverse_transfer(transfer_id="tr_missing", amount=100, idempotency_key="v-1")

    assert (caught.value.code, caught.value.http_status) == ("resource_missing", 404)


def test_transfer_to_unknown_account_is_permanent(gateway):
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.create_transfer(amount=100, currency="USD", destination="acct_nobody", idempotency_key="t-1")

    assert caught.value.code == "resource_missing"


def test_authentication_error_is_permanent():
    bad = StripeGateway(stripe.StripeClient("sk_bad", http_client=SandboxHTTPClient(), max_network_retries=0))

    with pytest.raises(PermanentGatewayError) as caught:
        bad.retrieve_refund("re_x")

    assert (caught.value.http_status, caught.value.error_type) == (401, "authentication_error")


def test_refund_that_fails_asynchronously(gateway, paid_intent):
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC)

    created = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=10_000, idempotency_key="refund-1")
    later = gateway.retrieve_refund(created.id)

    assert (created.status, created.failure_reason) == ("pending", "")
    assert (later.status, later.failure_reason) == ("failed", "expired_or_canceled_card")
    assert gateway.list_refunds(payment_intent_id=paid_intent.id) == [later]
    assert gateway.retrieve_payment_intent(paid_intent.id).amount_refunded == 0


def test_pruned_key_lets_a_second_refund_through(gateway, paid_intent):
    """Why the engine looks up before reusing an old key: after Stripe prunes it, it executes again."""
    first = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")
    ledger.forget_idempotency_keys()

    second = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1_000, idempotency_key="refund-1")

    assert second.id != first.id
    assert len(ledger.refunds_for(paid_intent.id)) == 2


def test_list_refunds_reads_every_page_of_that_payment_only(gateway, paid_intent):
    other = gateway.create_payment_intent(amount=500, currency="USD", idempotency_key="other-charge")
    gateway.refund_payment(payment_intent_id=other.id, amount=500, idempotency_key="other-refund")
    for n in range(101):
        gateway.refund_payment(payment_intent_id=paid_intent.id, amount=1, idempotency_key=f"r-{n}")

    listed = gateway.list_refunds(payment_intent_id=paid_intent.id)

    assert len(listed) == 101
    assert {r.payment_intent_id for r in listed} == {paid_intent.id}


def _sdk_error(cls, status, error_type, code=None):
    body = {"error": {"type": error_type, "message": f"{cls.__name__} happened", **({"code": code} if code else {})}}
    if cls in (stripe.CardError, stripe.InvalidRequestError):
        return cls(body["error"]["message"], None, code, json_body=body, http_status=status)
    return cls(body["error"]["message"], json_body=body, http_status=status)


@pytest.mark.parametrize(
    ("error", "expected_class", "expected_type"),
    [
        (_sdk_error(stripe.CardError, 402, "card_error", "card_declined"), PermanentGatewayError, "card_error"),
        (_sdk_error(stripe.PermissionError, 403, "invalid_request_error"), PermanentGatewayError, "permission_error"),
        (_sdk_error(stripe.APIError, 502, "api_error"), TransientGatewayError, "api_error"),
        (_sdk_error(stripe.APIError, 409, "invalid_request_error", "lock_timeout"), TransientGatewayError, None),
        (_sdk_error(stripe.IdempotencyError, 400, "idempotency_error"), IdempotencyConflictError, None),
    ],
    ids=["card", "permission", "502", "409-lock", "idempotency"],
)
def test_sdk_error_classes_map_to_gateway_errors(error, expected_class, expected_type):
    translated = gateway_module._translate(error)

    assert type(translated) is expected_class
    assert translated.http_status == error.http_status
    assert translated.message == error.user_message
    if expected_type:
        assert translated.error_type == expected_type


def test_gateway_error_keeps_stripes_fields():
    error = TransientGatewayError("boom", code="rate_limit", http_status=429, error_type="invalid_request_error")

    assert isinstance(error, GatewayError)
    assert (error.message, error.code, error.http_status, error.error_type) == (
        "boom",
        "rate_limit",
        429,
        "invalid_request_error",
    )
    assert str(error) == "boom"


@override_settings(STRIPE_API_KEY="")
def test_get_gateway_uses_the_sandbox_without_an_api_key():
    gateway_module._gateways.clear()

    first = get_gateway()

    assert first is get_gateway()
    assert isinstance(first._client._requestor._client, SandboxHTTPClient)
    assert first.create_payment_intent(amount=500, currency="USD", idempotency_key="k").status == "succeeded"
    assert ledger.call_count("/v1/payment_intents") == 1


def test_get_gateway_uses_real_stripe_with_an_api_key_and_no_sdk_retries():
    gateway_module._gateways.clear()
    with override_settings(STRIPE_API_KEY="sk_test_real_key"):
        real = get_gateway()
    sandbox = get_gateway()

    assert real is not sandbox
    assert not isinstance(real._client._requestor._client, SandboxHTTPClient)
    assert real._client._requestor._options.max_network_retries == 0
    assert sandbox._client._requestor._options.max_network_retries == 0
    gateway_module._gateways.clear()


# --- concurrency ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_same_key_refunds_through_the_gateway_yield_one_refund(gateway, paid_intent, in_threads):
    results = in_threads(
        6,
        lambda _: gateway.refund_payment(payment_intent_id=paid_intent.id, amount=2_000, idempotency_key="refund-c"),
    )

    refunds = ledger.refunds_for(paid_intent.id)
    assert len(refunds) == 1
    for result in results:
        if isinstance(result, GatewayError):
            assert isinstance(result, TransientGatewayError) and result.code == "idempotency_key_in_use", result
        else:
            assert result.id == refunds[0].stripe_id
    # The losers retry with the same key and get the winner's refund.
    retried = gateway.refund_payment(payment_intent_id=paid_intent.id, amount=2_000, idempotency_key="refund-c")
    assert retried.id == refunds[0].stripe_id

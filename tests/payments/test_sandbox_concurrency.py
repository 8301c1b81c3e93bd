"""The Stripe sandbox under concurrent callers (threads, each with its own database connection): one key,
faults consumed exactly once, reversals and refunds that never exceed what is there.

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import threading
import time

import pytest
import stripe
from django.db import connection

from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, SandboxIdempotencyKey
from tests.payments.sandbox_requests import pay, refund, reverse, transfer

pytestmark = pytest.mark.django_db


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

"""Fixtures for talking to the Stripe sandbox through the real SDK, raw or through StripeGateway."""

import threading

import pytest
from django.db import connection

from payments.gateway import StripeGateway
from stripe_sandbox import ledger
from stripe_sandbox.transport import sandbox_stripe_client


@pytest.fixture
def stripe_client():
    return sandbox_stripe_client()


@pytest.fixture
def gateway(stripe_client):
    return StripeGateway(stripe_client)


@pytest.fixture
def paid_intent(gateway):
    """A succeeded $100.00 payment intent (charge included)."""
    return gateway.create_payment_intent(amount=10_000, currency="USD", idempotency_key="test-charge")


@pytest.fixture
def merchant_account():
    return ledger.create_account(balance=0, currency="usd")


@pytest.fixture
def funded_transfer(gateway, paid_intent, merchant_account):
    """A $60.00 transfer to the merchant's connected account, funded by the paid intent's charge."""
    return gateway.create_transfer(
        amount=6_000,
        currency="USD",
        destination=merchant_account,
        idempotency_key="test-transfer",
        source_transaction=paid_intent.charge_id,
    )


def run_in_threads(count: int, work) -> list:
    """Run work(index) in `count` threads started together, each with its own database connection.

    Returns each thread's return value or the exception it raised, in index order.
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index):
        try:
            barrier.wait(timeout=10)
            results[index] = work(index)
        except Exception as exc:  # collected for the test to assert on
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def in_threads():
    return run_in_threads

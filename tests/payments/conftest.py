"""Fixtures for talking to the Stripe sandbox through the real SDK, raw or through StripeGateway."""

import functools

import pytest

from payments.gateway import StripeGateway
from stripe_sandbox import ledger
from stripe_sandbox.transport import sandbox_stripe_client
from tests.parallel import run_in_parallel


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
    return run_in_parallel(*(functools.partial(work, index) for index in range(count)), errors_as_results=True)


@pytest.fixture
def in_threads():
    return run_in_threads

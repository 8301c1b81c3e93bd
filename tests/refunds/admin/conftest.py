"""Operators and viewers as the data migration defines them, and refunds in each triage state,
made by the real engine against the Stripe sandbox."""

import pytest
from django.test import Client

from refunds.models import RefundStatus
from tests.refunds.admin.helpers import OPERATORS, VIEWERS, ensure_refund_groups, processed, record, staff_in
from tests.world import funded_bag


@pytest.fixture
def refund_groups(db):
    return ensure_refund_groups()


@pytest.fixture
def operator(refund_groups):
    return staff_in(OPERATORS, "olivia")


@pytest.fixture
def viewer(refund_groups):
    return staff_in(VIEWERS, "victor")


@pytest.fixture
def operator_client(operator):
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(viewer):
    client = Client()  # its own session: a test may use both clients
    client.force_login(viewer)
    return client


@pytest.fixture
def failed_refund(db):
    """Both transfers reversed, then the shopper refund refused for good (charge disputed): FAILED."""
    refund = processed(record(funded_bag()), fault="charge_disputed", path="/v1/refunds")
    assert refund.status == RefundStatus.FAILED
    return refund


@pytest.fixture
def partially_completed_refund(db):
    """The merchant's reversal refused (balance too low), the shopper refunded: PARTIALLY_COMPLETED."""
    refund = processed(record(funded_bag()), fault="balance_insufficient", path="/v1/transfers/*/reversals")
    assert refund.status == RefundStatus.PARTIALLY_COMPLETED
    return refund


@pytest.fixture
def completed_refund(db):
    refund = processed(record(funded_bag()))
    assert refund.status == RefundStatus.COMPLETED
    return refund


@pytest.fixture
def unprocessed_refund(db):
    """Recorded, nothing sent to Stripe yet (its processing message not delivered): PROCESSING."""
    return record(funded_bag())

"""The Stripe sandbox's refunds, driven through the official SDK: amounts, look-ups and lists, refusals
(already refunded, disputed) and refunds that fail asynchronously.

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import pytest
import stripe

from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.payments.sandbox_requests import pay, refund

pytestmark = pytest.mark.django_db


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


def test_refund_that_fails_asynchronously(stripe_client):
    intent = pay(stripe_client, 10_000)
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

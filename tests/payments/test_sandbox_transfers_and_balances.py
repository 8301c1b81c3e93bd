"""The Stripe sandbox's transfers, transfer reversals and balances, driven through the official SDK.

Every test asserts what Stripe would hold (the ledger) and what the SDK surfaced.
"""

import pytest
import stripe

from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.payments.sandbox_requests import pay, reverse, transfer

pytestmark = pytest.mark.django_db


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

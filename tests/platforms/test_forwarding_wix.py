"""Issue 14 on Wix: a channel refund is recorded on Wix with Refund Payments (`externalRefund: true`:
Wix records it and calls no payment provider) before any money moves; Wix's refund_completed echo is
the same refund; a refusal moves nothing; an unreachable Wix is looked up before any resend and ends
with an operator. A channel cancellation is Wix's Cancel Order. WIX_REFUND_WRITES off: the merchant
is told, as before."""

import json
from datetime import UTC, datetime

import pytest
import requests
import responses
from rest_framework.test import APIClient

from platforms.forwarding import refund_forward
from platforms.models import InboundEvent, Platform
from refunds.admin.selectors import refunds_needing_attention
from refunds.models import BagStatus, ForwardingState, OrderSku, Refund, RefundStatus
from refunds.services.forwarding import refund_forwarding_bypass
from tests.factories import UserFactory
from tests.platforms.delivery import deliver
from tests.platforms.forwarding_world import (
    channel_refund,
    funded_store,
    money_moved,
    nothing_planned,
    request_body,
    run_on_commit,
)
from tests.platforms.test_cancellation import cancel
from tests.refunds.api.conftest import make_channel

pytestmark = pytest.mark.django_db

# The order of tests/fixtures/wix/refund_completed.json, so its echo names our bag.
ORDER_ID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
MUG_LINE = "9c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b"
TOWEL_LINE = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"
PAYMENT_ID = "c9d8e7f6-a5b4-4c3d-2e1f-0a9b8c7d6e5f"
WIX_REFUND_ID = "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
API_KEY = "IST.test-key-0123456789"
SITE_ID = "83799f16-12a9-4803-963e-ed6fed6c7e4d"
CREDENTIALS = {"api_key": API_KEY, "account_id": "1a2b3c4d-0000-0000-0000-000000000000", "site_id": SITE_ID}

TRANSACTIONS_URL = f"https://www.wixapis.com/ecom/v1/payments/orders/{ORDER_ID}"
REFUND_PAYMENTS_URL = "https://www.wixapis.com/ecom/v1/order-billing/refund-payments"
ORDER_URL = f"https://www.wixapis.com/ecom/v1/orders/{ORDER_ID}"
CANCEL_URL = f"{ORDER_URL}/cancel"
REFUND = "data.actionEvent.body.refund"  # where refund_completed carries the refund


@pytest.fixture
def channel(db):
    return make_channel()


@pytest.fixture
def wix(channel, wix_keys, settings):
    settings.WIX_REFUND_WRITES = True
    return funded_store(
        channel,
        Platform.WIX,
        order_id=ORDER_ID,
        line_ids=(MUG_LINE, TOWEL_LINE),
        credentials=CREDENTIALS,
        secret=wix_keys[1],
    )


def transactions(*refunds: dict, paid: str = "118.00") -> dict:
    """List Transactions For Single Order: one payment of the order, and its refunds."""
    return {
        "orderTransactions": {
            "orderId": ORDER_ID,
            "payments": [{"id": PAYMENT_ID, "amount": {"amount": paid, "formattedAmount": f"${paid}"}}],
            "refunds": list(refunds),
        }
    }


def wix_refund(refund_id: str = WIX_REFUND_ID, *, reason: str = "", amount: str = "48.00") -> dict:
    return {
        "id": refund_id,
        "createdDate": "2026-12-02T10:15:04.000Z",
        "transactions": [
            {
                "paymentId": PAYMENT_ID,
                "amount": {"amount": amount, "formattedAmount": f"${amount}"},
                "refundStatus": "SUCCEEDED",
                "externalRefund": True,
            }
        ],
        "details": {"items": [{"lineItemId": MUG_LINE, "quantity": 1}], "shippingIncluded": True, "reason": reason},
    }


def mug_refund(store) -> dict:
    return {
        "amount_refunded": 4800,
        "reason": "Broken in transit",
        "restock_items": True,
        "notify_customer": True,
        "skus": [{"order_sku_id": store.mug.pk, "quantity_refunded": 1}],
        "shipping": {"amount": 800},
    }


@responses.activate
def test_channel_refund_is_recorded_on_wix_before_money_moves_and_its_echo_stays_one_refund(channel, wix):
    read = responses.get(TRANSACTIONS_URL, json=transactions())
    create = responses.post(
        REFUND_PAYMENTS_URL, json={"refund": wix_refund(), "orderTransactions": transactions()["orderTransactions"]}
    )

    response = channel_refund(APIClient(), channel, wix, mug_refund(wix))

    assert response.status_code == 201, response.json()
    refund = Refund.objects.get(bag=wix.bag)
    marker_note = f"[violet-refund:{refund.pk}] Broken in transit"
    mug = [{"lineItemId": MUG_LINE, "quantity": 1}]
    assert len(read.calls) == 1  # the payment to refund against, and what it has left
    assert request_body(create.calls[0]) == {
        "orderId": ORDER_ID,
        "paymentRefunds": [{"paymentId": PAYMENT_ID, "amount": {"amount": "48.00"}, "externalRefund": True}],
        "refundItems": {"lineItems": mug, "shipping": {"amount": {"amount": "8.00"}}},
        "sideEffects": {"restockInfo": {"type": "SOME_ITEMS", "items": mug}, "sendOrderRefundedEmail": True},
        "customerReason": marker_note,
    }
    headers = create.calls[0].request.headers
    assert (headers["Authorization"], headers["wix-site-id"]) == (API_KEY, SITE_ID)
    assert "wix-account-id" not in headers
    refund.refresh_from_db()
    assert (refund.forwarding.state, refund.external_id) == (ForwardingState.ACCEPTED, WIX_REFUND_ID)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 4800

    # Wix's refund_completed for the refund we created: still one refund, nothing moves again.
    deliver(
        wix,
        "refund_completed",
        event_id="wix-echo",
        changes={
            f"{REFUND}.id": WIX_REFUND_ID,
            f"{REFUND}.details.reason": marker_note,
            f"{REFUND}.transactions.0.amount": {"amount": "48.00", "formattedAmount": "$48.00"},
        },
    )

    assert Refund.objects.filter(bag=wix.bag).count() == 1
    assert money_moved(refund)[0] == 4800
    event = InboundEvent.objects.get(event_id="wix-echo")
    assert event.status == InboundEvent.Status.IGNORED and "already recorded" in event.outcome
    assert len(create.calls) == 1


@responses.activate
def test_a_lost_answer_is_found_by_its_marker_and_never_sent_twice_and_its_echo_is_the_same_refund(
    channel, wix, wix_keys
):
    responses.get(TRANSACTIONS_URL, json=transactions())
    create = responses.post(REFUND_PAYMENTS_URL, body=requests.ReadTimeout("read timed out"))

    channel_refund(APIClient(), channel, wix, {"amount_refunded": 2000, "reason": "Late"})

    refund = Refund.objects.get(bag=wix.bag)
    assert refund.forwarding.state == ForwardingState.RETRYING and nothing_planned(refund)
    assert len(create.calls) == 1  # Refund Payments is never retried blindly

    # Wix did record it: the next send reads the order's refunds first and finds our marker.
    responses.replace(
        responses.GET, TRANSACTIONS_URL, json=transactions(wix_refund(reason=f"[violet-refund:{refund.pk}] Late"))
    )
    type(refund.forwarding).objects.filter(pk=refund.forwarding.pk).update(next_attempt_at=None)
    run_on_commit(refund_forward, refund_id=refund.pk)

    refund.refresh_from_db()
    assert len(create.calls) == 1
    assert (refund.forwarding.state, refund.external_id) == (ForwardingState.ACCEPTED, WIX_REFUND_ID)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 2000
    deliver(
        wix,
        "refund_completed",
        event_id="wix-echo-late",
        changes={f"{REFUND}.id": WIX_REFUND_ID, f"{REFUND}.details.reason": f"[violet-refund:{refund.pk}] Late"},
    )
    assert Refund.objects.filter(bag=wix.bag).count() == 1 and money_moved(refund)[0] == 2000


@responses.activate
def test_the_echo_arriving_before_our_send_is_looked_up_is_the_same_refund(channel, wix):
    # The create's answer is lost, and Wix's refund_completed (with our marker) arrives before the
    # forwarding is sent again: the echo accepts the waiting refund, once.
    responses.get(TRANSACTIONS_URL, json=transactions())
    create = responses.post(REFUND_PAYMENTS_URL, status=502, body="Bad Gateway")

    channel_refund(APIClient(), channel, wix, {"amount_refunded": 2000, "reason": "Late"})
    refund = Refund.objects.get(bag=wix.bag)
    assert refund.forwarding.state == ForwardingState.RETRYING

    deliver(
        wix,
        "refund_completed",
        event_id="wix-echo-first",
        changes={
            f"{REFUND}.id": WIX_REFUND_ID,
            f"{REFUND}.details.reason": f"[violet-refund:{refund.pk}] Late",
            f"{REFUND}.transactions.0.amount": {"amount": "20.00"},
        },
    )

    refund.refresh_from_db()
    assert Refund.objects.filter(bag=wix.bag).count() == 1
    assert (refund.forwarding.state, refund.external_id) == (ForwardingState.ACCEPTED, WIX_REFUND_ID)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 2000
    assert "echo of refund" in InboundEvent.objects.get(event_id="wix-echo-first").outcome
    assert len(create.calls) == 1


@responses.activate
def test_wix_refusal_fails_the_refund_with_its_message_and_moves_nothing(channel, wix):
    responses.get(TRANSACTIONS_URL, json=transactions())
    responses.post(
        REFUND_PAYMENTS_URL,
        status=400,
        json={
            "message": "Refund amount exceeds the refundable amount",
            "details": {"applicationError": {"code": "INVALID_REFUND_AMOUNT", "description": "too much"}},
        },
    )

    channel_refund(APIClient(), channel, wix, mug_refund(wix))

    refund = Refund.objects.get(bag=wix.bag)
    assert refund.status == RefundStatus.FAILED and refund.forwarding.state == ForwardingState.REFUSED
    assert nothing_planned(refund)
    [error] = refund.errors.all()
    assert error.error_code == 3100 and "exceeds the refundable amount" in error.error_message
    assert OrderSku.objects.get(pk=wix.mug.pk).quantity_refunded == 0


@responses.activate
def test_less_refundable_on_wix_than_asked_is_a_refusal_before_anything_is_sent(channel, wix):
    # 98.00 of the 118.00 payment was refunded on Wix already (outside the network): 20.00 is left.
    responses.get(TRANSACTIONS_URL, json=transactions(wix_refund("earlier", amount="98.00")))
    create = responses.post(REFUND_PAYMENTS_URL, json={})

    channel_refund(APIClient(), channel, wix, {"amount_refunded": 4800})

    refund = Refund.objects.get(bag=wix.bag)
    assert refund.status == RefundStatus.FAILED and nothing_planned(refund)
    assert "Wix shows 20.00 USD refundable" in refund.errors.get().error_message
    assert refund.forwarding.sends == 0 and len(create.calls) == 0


@responses.activate
def test_unreachable_wix_is_looked_up_before_each_resend_then_an_operator_moves_the_money(channel, wix, settings):
    settings.FORWARDING_MAX_ATTEMPTS = 2
    read = responses.get(TRANSACTIONS_URL, json=transactions())  # Wix lists no refund of ours: not done
    create = responses.post(REFUND_PAYMENTS_URL, status=503, body="Service Unavailable")

    channel_refund(APIClient(), channel, wix, {"amount_refunded": 1000})
    refund = Refund.objects.get(bag=wix.bag)
    assert refund.forwarding.state == ForwardingState.RETRYING and nothing_planned(refund)

    type(refund.forwarding).objects.filter(pk=refund.forwarding.pk).update(next_attempt_at=None)
    refund_forward(refund_id=refund.pk)

    refund.refresh_from_db()
    assert len(create.calls) == 2  # one per send, never retried inside a send
    assert len(read.calls) == 3  # payments before each send, plus the marker look-up before the second
    assert refund.forwarding.state == ForwardingState.STALLED and "503" in refund.forwarding.last_error
    assert refund in refunds_needing_attention() and nothing_planned(refund)

    run_on_commit(refund_forwarding_bypass, refund=refund, user=UserFactory(is_staff=True), note="Wix down")
    refund.refresh_from_db()
    assert refund.forwarding.state == ForwardingState.BYPASSED
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 1000


@responses.activate
def test_with_wix_refund_writes_off_the_merchant_is_told_and_the_money_moves_at_once(channel, wix, settings):
    settings.WIX_REFUND_WRITES = False

    response = channel_refund(APIClient(), channel, wix, {"amount_refunded": 2000})

    assert response.status_code == 201
    refund = Refund.objects.get(bag=wix.bag)
    assert refund.forwarding.state == ForwardingState.NOT_FORWARDED
    assert "has no API to record a refund" in refund.forwarding.reason
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 2000
    assert len(responses.calls) == 0


@responses.activate
def test_a_channel_cancellation_is_wix_cancel_order_then_the_full_refund(channel, wix):
    read = responses.get(ORDER_URL, json={"order": {"id": ORDER_ID, "status": "APPROVED"}})
    cancelled = responses.post(CANCEL_URL, json={"order": {"id": ORDER_ID, "status": "CANCELED"}})
    responses.get(TRANSACTIONS_URL, json=transactions())
    create = responses.post(REFUND_PAYMENTS_URL, json={"refund": wix_refund(amount="118.00")})

    response = cancel(channel, wix, {"reason": "Shopper changed their mind", "notify_customer": True})

    assert response.status_code == 200, response.json()
    [bag] = response.json()["cancelled_bags"]
    assert bag["status"] == "CANCELED" and bag["refund"]["amount"] == 11800
    assert len(read.calls) == 1  # open: cancel it
    assert request_body(cancelled.calls[0]) == {
        "sendOrderCanceledEmail": True,
        "restockAllItems": True,
        "customMessage": "Shopper changed their mind",
    }
    assert cancelled.calls[0].request.headers["wix-site-id"] == SITE_ID
    wix.bag.refresh_from_db()
    assert wix.bag.status == BagStatus.CANCELED
    refund = Refund.objects.get(bag=wix.bag)
    assert json.loads(create.calls[0].request.body)["paymentRefunds"][0]["amount"] == {"amount": "118.00"}
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 11800


@responses.activate
def test_wix_refusing_the_cancel_is_a_cancellation_failure_and_nothing_happens(channel, wix):
    read = responses.get(ORDER_URL, json={"order": {"id": ORDER_ID, "status": "APPROVED"}})
    responses.post(
        CANCEL_URL,
        status=428,
        json={"message": "Order cannot be canceled", "details": {"applicationError": {"code": "ORDER_FULFILLED"}}},
    )
    before = wix.bag.status

    body = cancel(channel, wix).json()

    [bag] = body["cancelled_bags"]
    assert body["status"] == "CANCELLATION_FAILURE" and bag["errors"][0]["error_code"] == "platform_refused"
    assert "Order cannot be canceled" in bag["errors"][0]["message"]
    assert len(read.calls) == 2  # before the cancel, and the refusal read back (not cancelled there)
    wix.bag.refresh_from_db()
    assert wix.bag.status == before and not Refund.objects.filter(bag=wix.bag).exists()


@responses.activate
def test_a_refused_repeat_of_a_cancel_that_went_through_is_no_failure(channel, wix, settings):
    # The first attempt's answer was lost (502), the client's repeat is refused (428: already
    # cancelled), and the order reads CANCELED: the cancellation goes on.
    settings.WIX_REFUND_WRITES = False
    responses.get(ORDER_URL, json={"order": {"id": ORDER_ID, "status": "APPROVED"}})
    responses.get(ORDER_URL, json={"order": {"id": ORDER_ID, "status": "CANCELED"}})
    responses.post(CANCEL_URL, status=502, body="Bad Gateway")
    responses.post(CANCEL_URL, status=428, json={"message": "Order is already canceled"})

    body = cancel(channel, wix).json()

    assert body["status"] == "CANCELED" and body["cancelled_bags"][0]["refund"]["amount"] == 11800
    refund = Refund.objects.get(bag=wix.bag)
    assert refund.forwarding.state == ForwardingState.NOT_FORWARDED  # refunds not written: merchant told


@responses.activate
def test_an_order_placed_before_2024_04_22_is_not_sent_to_wix_the_merchant_is_told(channel, wix):
    # Seeds 000/003: Wix's Order API cannot refund such orders (merchants cancel them instead).
    type(wix.bag).objects.filter(pk=wix.bag.pk).update(placed_at=datetime(2024, 3, 14, 16, 20, tzinfo=UTC))

    response = channel_refund(APIClient(), channel, wix, {"amount_refunded": 2000})

    assert response.status_code == 201
    refund = Refund.objects.get(bag=wix.bag)
    assert refund.forwarding.state == ForwardingState.NOT_FORWARDED
    assert "placed before 2024-04-22" in refund.forwarding.reason
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 2000
    assert len(responses.calls) == 0

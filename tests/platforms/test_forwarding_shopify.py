"""Issue 14 on Shopify: a channel refund is recorded on Shopify (calculate, then create) before any
money moves; Shopify's refunds/create echo is the same refund; a refusal moves nothing; an
unreachable Shopify ends with an operator, who can move the money without it."""

import pytest
import responses
from django.core import mail
from rest_framework.test import APIClient

from platforms.forwarding import refund_forward
from platforms.models import InboundEvent
from refunds.admin.selectors import refunds_needing_attention
from refunds.models import ForwardingState, OrderSku, Refund, RefundStatus
from refunds.services import refund_cancel, refund_retry
from refunds.services.forwarding import refund_forwarding_bypass, refund_forwarding_retry
from tests.factories import MerchantMembershipFactory, UserFactory
from tests.platforms.delivery import SHOPIFY_SECRET, deliver, fixture_json
from tests.platforms.forwarding_world import (
    SHOPIFY,
    channel_refund,
    funded_platform_store,
    funded_store,
    money_moved,
    nothing_planned,
    request_body,
    run_on_commit,
)
from violet_refunds.exceptions import InvalidTransition

pytestmark = pytest.mark.django_db

ADMIN = "https://blue-mug.myshopify.com/admin/api/2025-01/orders/450789469"
CALCULATE_URL = f"{ADMIN}/refunds/calculate.json"
CREATE_URL = f"{ADMIN}/refunds.json"
LIST_URL = f"{ADMIN}/refunds.json"
SHOPIFY_REFUND_ID = 929361470


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def store(channel):
    return funded_platform_store(channel, SHOPIFY, secret=SHOPIFY_SECRET)


def calculated(amount: str = "48.00") -> dict:
    """Shopify's calculate answer: the suggested refund transaction against the order's gateway."""
    return {
        "refund": {
            "shipping": {"amount": "0.00", "tax": "0.00", "maximum_refundable": "10.00"},
            "refund_line_items": [
                {
                    "quantity": 1,
                    "line_item_id": 466157049,
                    "location_id": None,
                    "restock_type": "return",
                    "price": "40.00",
                    "subtotal": "40.00",
                    "total_tax": "3.20",
                    "discounted_price": "40.00",
                    "discounted_total_price": "40.00",
                    "total_cart_discount_amount": "0.00",
                }
            ],
            "transactions": [
                {
                    "order_id": 450789469,
                    "kind": "suggested_refund",
                    "gateway": "violet",
                    "parent_id": 801038806,
                    "amount": amount,
                    "currency": "USD",
                    "maximum_refundable": "118.00",
                }
            ],
            "currency": "USD",
        }
    }


def created(refund_id: int = SHOPIFY_REFUND_ID, note: str = "") -> dict:
    return {
        "refund": {
            "id": refund_id,
            "order_id": 450789469,
            "created_at": "2026-03-02T10:15:04-05:00",
            "note": note,
            "restock": True,
            "refund_line_items": [],
            "transactions": [
                {
                    "id": 179259969,
                    "order_id": 450789469,
                    "kind": "refund",
                    "gateway": "violet",
                    "status": "success",
                    "amount": "48.00",
                    "currency": "USD",
                    "parent_id": 801038806,
                }
            ],
        }
    }


MUG_REFUND = {
    "amount_refunded": 4800,
    "reason": "Broken in transit",
    "restock_items": True,
    "notify_customer": True,
    "skus": [],  # filled per test with the mug's order_sku_id
}


def _mug_refund(store) -> dict:
    # One mug (40.00) and its tax (3.20 ... the channel asks 48.00 all in: 40.00 + 8.00 shipping/tax).
    return {**MUG_REFUND, "skus": [{"order_sku_id": store.mug.pk, "quantity_refunded": 1}], "shipping": {"amount": 800}}


@responses.activate
def test_channel_refund_is_recorded_on_shopify_before_money_moves_and_its_echo_stays_one_refund(
    api_client, channel, store
):
    calculate = responses.post(CALCULATE_URL, json=calculated())
    create = responses.post(CREATE_URL, json=created(), status=201)

    response = channel_refund(api_client, channel, store, _mug_refund(store))

    assert response.status_code == 201, response.json()
    refund = Refund.objects.get(bag=store.bag)
    # Exactly what Shopify documents: calculate with the lines and shipping, then create with the
    # suggested parent transaction and gateway, notify and restock as the channel asked, our note.
    assert request_body(calculate.calls[0]) == {
        "refund": {
            "refund_line_items": [{"line_item_id": 466157049, "quantity": 1, "restock_type": "return"}],
            "shipping": {"amount": "8.00"},
        }
    }
    assert calculate.calls[0].request.headers["X-Shopify-Access-Token"] == "shpat_test"
    assert request_body(create.calls[0]) == {
        "refund": {
            "refund_line_items": [{"line_item_id": 466157049, "quantity": 1, "restock_type": "return"}],
            "shipping": {"amount": "8.00"},
            "currency": "USD",
            "notify": True,
            "note": f"[violet-refund:{refund.pk}] Broken in transit",
            "transactions": [{"parent_id": 801038806, "amount": "48.00", "kind": "refund", "gateway": "violet"}],
        }
    }
    refund.refresh_from_db()
    assert refund.forwarding.state == ForwardingState.ACCEPTED
    assert refund.forwarding.platform_refund_id == str(SHOPIFY_REFUND_ID)
    assert refund.external_id == str(SHOPIFY_REFUND_ID)
    assert refund.status == RefundStatus.COMPLETED
    assert money_moved(refund)[0] == 4800

    # Shopify's refunds/create webhook for that refund: still one refund, nothing moves again.
    echo = fixture_json("shopify", "refunds_create.json") | {
        "id": SHOPIFY_REFUND_ID,
        "note": f"[violet-refund:{refund.pk}] Broken in transit",
    }
    deliver(store, echo, topic="refunds/create", event_id="echo-1")

    assert Refund.objects.filter(bag=store.bag).count() == 1
    assert money_moved(refund)[0] == 4800
    event = InboundEvent.objects.get(event_id="echo-1")
    assert event.status == InboundEvent.Status.IGNORED and "already recorded" in event.outcome
    assert len(create.calls) == 1


@responses.activate
def test_an_echo_arriving_before_the_create_call_returned_is_the_same_refund(api_client, channel, store):
    responses.post(CALCULATE_URL, json=calculated())
    echoes = []

    def create_while_the_webhook_arrives(request):
        # Shopify sends refunds/create before answering our create call (the race of issue 14).
        refund = Refund.objects.get(bag=store.bag)
        body = fixture_json("shopify", "refunds_create.json") | {
            "id": SHOPIFY_REFUND_ID,
            "note": f"[violet-refund:{refund.pk}] Broken in transit",
        }
        echoes.append(deliver(store, body, topic="refunds/create", event_id="echo-early"))
        import json

        return 201, {}, json.dumps(created())

    responses.add_callback(responses.POST, CREATE_URL, callback=create_while_the_webhook_arrives)

    response = channel_refund(api_client, channel, store, _mug_refund(store))

    assert response.status_code == 201
    assert len(echoes) == 1
    refund = Refund.objects.get(bag=store.bag)  # exactly one
    assert refund.external_id == str(SHOPIFY_REFUND_ID)
    assert refund.forwarding.state == ForwardingState.ACCEPTED
    assert refund.status == RefundStatus.COMPLETED
    assert money_moved(refund)[0] == 4800
    assert "echo of refund" in InboundEvent.objects.get(event_id="echo-early").outcome


@responses.activate
def test_shopify_refusal_fails_the_refund_with_its_message_and_moves_nothing(api_client, channel, store):
    responses.post(CALCULATE_URL, json=calculated())
    responses.post(
        CREATE_URL,
        status=422,
        json={"errors": {"refund_line_items": ["cannot refund more items than were purchased"]}},
    )

    response = channel_refund(api_client, channel, store, _mug_refund(store))

    assert response.status_code == 201  # recorded PROCESSING; the refusal follows
    refund = Refund.objects.get(bag=store.bag)
    assert refund.status == RefundStatus.FAILED
    assert refund.forwarding.state == ForwardingState.REFUSED
    assert nothing_planned(refund)
    assert OrderSku.objects.get(pk=store.mug.pk).quantity_refunded == 0
    body = api_client.get(f"/v1/orders/{store.bag.order_id}/refunds/{refund.pk}", headers=channel.headers).json()
    assert body["status"] == "FAILED"
    [error] = body["errors"]
    assert error["error_code"] == 3100
    assert "cannot refund more items than were purchased" in error["error_message"]
    # Nothing is left to repair: the generic repairs refuse it (they would count its amounts again).
    for repair in (refund_retry, refund_cancel):
        with pytest.raises(InvalidTransition):
            repair(refund=refund, user=None)
    # Nothing counts against the bag: the channel can send a corrected refund at once.
    responses.post(CREATE_URL, json=created(SHOPIFY_REFUND_ID + 1), status=201)
    again = channel_refund(api_client, channel, store, {}, key="k-2")
    assert again.status_code == 201
    assert again.json()["amount"] == 11800


@responses.activate
def test_unreachable_shopify_is_retried_then_an_operator_moves_the_money_without_it(
    api_client, channel, store, settings
):
    settings.FORWARDING_MAX_ATTEMPTS = 2
    owner = UserFactory(email="owner@blue-mug.example")
    MerchantMembershipFactory(merchant=store.merchant, user=owner)
    calculate = responses.post(CALCULATE_URL, status=503, body="Service Unavailable")

    channel_refund(api_client, channel, store, _mug_refund(store))

    refund = Refund.objects.get(bag=store.bag)
    assert refund.forwarding.state == ForwardingState.RETRYING
    assert refund.status == RefundStatus.PROCESSING and nothing_planned(refund)
    # The next send is due: Shopify still down, the budget (2) is spent.
    type(refund.forwarding).objects.filter(pk=refund.forwarding.pk).update(next_attempt_at=None)
    assert refund_forward(refund_id=refund.pk) is None
    refund.forwarding.refresh_from_db()
    assert refund.forwarding.state == ForwardingState.STALLED
    assert "503" in refund.forwarding.last_error
    assert len(calculate.calls) == 6  # 2 sends x 3 quick client attempts (calculate only: nothing created)
    assert refund in refunds_needing_attention()
    assert nothing_planned(refund)
    assert refund.forwarding.sends == 0  # no create ever left: nothing to look up at Shopify

    operator = UserFactory(is_staff=True, is_superuser=True)
    run_on_commit(refund_forwarding_bypass, refund=refund, user=operator, note="Shopify down for hours, ticket 77")

    refund.refresh_from_db()
    assert refund.forwarding.state == ForwardingState.BYPASSED
    assert refund.status == RefundStatus.COMPLETED
    assert money_moved(refund)[0] == 4800
    assert refund not in refunds_needing_attention()
    audit = refund.events.filter(kind="FORWARDING").last()
    assert audit.actor == f"operator:{operator.get_username()}" and "ticket 77" in audit.message
    [email] = mail.outbox
    assert email.to == ["owner@blue-mug.example"] and f"refund {refund.pk}" in email.subject


@responses.activate
def test_operator_retry_looks_the_refund_up_first_so_it_is_never_created_twice(api_client, channel, store, settings):
    settings.FORWARDING_MAX_ATTEMPTS = 1
    responses.post(CALCULATE_URL, json=calculated())
    create = responses.post(CREATE_URL, status=504, body="Gateway Timeout")  # it may have been done

    channel_refund(api_client, channel, store, _mug_refund(store))
    refund = Refund.objects.get(bag=store.bag)
    assert refund.forwarding.state == ForwardingState.STALLED
    assert len(create.calls) == 1  # a create is never retried blindly
    with pytest.raises(InvalidTransition, match="may have recorded this refund"):
        refund_cancel(refund=refund, user=None)  # Shopify may hold it: cancel would strand the shopper

    # Shopify did record it: its refund list carries our note.
    listed = responses.get(
        LIST_URL, json={"refunds": [created(SHOPIFY_REFUND_ID, note=f"[violet-refund:{refund.pk}] x")["refund"]]}
    )
    operator = UserFactory(is_staff=True, is_superuser=True)
    run_on_commit(refund_forwarding_retry, refund=refund, user=operator, note="Shopify is back")

    refund.refresh_from_db()
    assert len(listed.calls) == 1 and len(create.calls) == 1
    assert refund.forwarding.state == ForwardingState.ACCEPTED
    assert refund.external_id == str(SHOPIFY_REFUND_ID)
    assert refund.status == RefundStatus.COMPLETED


def test_a_merchant_whose_connection_cannot_write_is_told_and_the_money_moves_at_once(api_client, channel):
    store = funded_store(
        channel, SHOPIFY, order_id="450789470", line_ids=("1", "2"), credentials={"access_token": "shpat_only"}
    )
    owner = UserFactory(email="owner@store.example")
    MerchantMembershipFactory(merchant=store.merchant, user=owner)

    response = channel_refund(api_client, channel, store, {"amount_refunded": 2000})

    assert response.status_code == 201
    refund = Refund.objects.get(bag=store.bag)
    assert refund.forwarding.state == ForwardingState.NOT_FORWARDED
    assert "shop_domain" in refund.forwarding.reason
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 2000
    [email] = mail.outbox
    assert "20.00 USD" in email.body

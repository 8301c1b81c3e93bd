"""Issue 14 on BigCommerce (refund quote, then the refund, paid back offline) and WooCommerce (an order
refund with `api_refund: false`): the exact platform request, money after acceptance, the echo stays
one refund, a refusal moves nothing, an unreachable platform ends with an operator."""

import pytest
import responses
from rest_framework.test import APIClient

from platforms.models import InboundEvent, Platform
from refunds.admin.selectors import refunds_needing_attention
from refunds.models import ForwardingState, OrderSku, Refund, RefundStatus
from refunds.services.forwarding import refund_forwarding_bypass
from tests.factories import UserFactory
from tests.platforms.bigcommerce_store import (
    ACCESS_TOKEN,
    REFUND_CREATED,
    REFUNDS_URL,
    STORE_HASH,
    WEBHOOK_SECRET,
    order,
    refunds_body,
)
from tests.platforms.delivery import WOOCOMMERCE_STORE_URL, deliver
from tests.platforms.forwarding_world import (
    channel_refund,
    funded_platform_store,
    money_moved,
    nothing_planned,
    request_body,
    run_on_commit,
)

pytestmark = pytest.mark.django_db

BC_ORDER_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v2/orders/250"
BC_QUOTE_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v3/orders/250/payment_actions/refund_quotes"
BC_CREATE_URL = REFUNDS_URL  # POST creates, GET lists (spec 5.2 / 5.6)
WC_REFUNDS_URL = f"{WOOCOMMERCE_STORE_URL}/wp-json/wc/v3/orders/5120/refunds"


@pytest.fixture
def bc(channel):
    return funded_platform_store(channel, Platform.BIGCOMMERCE, secret=WEBHOOK_SECRET)


@pytest.fixture
def wc(channel):
    return funded_platform_store(channel, Platform.WOOCOMMERCE)


def bc_quote(amount: float = 48) -> dict:
    return {
        "data": {
            "order_id": 250,
            "total_refund_amount": amount,
            "total_refund_tax_amount": 0,
            "rounding": 0,
            "adjustment": 0,
            "tax_inclusive": False,
            "refund_methods": [
                [
                    {
                        "provider_id": "storecredit",
                        "provider_description": "Store Credit",
                        "amount": amount,
                        "offline": True,
                        "offline_provider": True,
                        "offline_reason": "",
                    }
                ],
                [
                    {
                        "provider_id": "custom",
                        "provider_description": "Custom",
                        "amount": amount,
                        "offline": True,
                        "offline_provider": True,
                        "offline_reason": "",
                    }
                ],
            ],
        },
        "meta": {},
    }


def bc_refund(refund_id: int, marker: str, amount: float = 48) -> dict:
    return {
        "id": refund_id,
        "order_id": 250,
        "user_id": 0,
        "created": "2026-03-02T15:15:04+00:00",
        "reason": "",
        "total_amount": amount,
        "total_tax": 0,
        "uses_merchant_override_values": False,
        "payments": [
            {
                "id": 9,
                "provider_id": "custom",
                "amount": amount,
                "offline": True,
                "is_declined": False,
                "declined_message": "",
            }
        ],
        "items": [{"item_type": "ORDER", "item_id": 250, "quantity": 0, "requested_amount": amount, "reason": marker}],
    }


@responses.activate
def test_bigcommerce_quote_then_offline_refund_then_money_then_the_echo_is_the_same_refund(channel, bc):
    quote = responses.post(BC_QUOTE_URL, json=bc_quote())
    create = responses.post(BC_CREATE_URL, json={"data": bc_refund(7, "x"), "meta": {}}, status=201)

    response = channel_refund(APIClient(), channel, bc, {"amount_refunded": 4800, "reason": "Damaged"})

    assert response.status_code == 201
    refund = Refund.objects.get(bag=bc.bag)
    marker_note = f"[violet-refund:{refund.pk}] Damaged"
    items = [{"item_type": "ORDER", "item_id": 250, "amount": 48.0, "reason": marker_note}]
    assert request_body(quote.calls[0]) == {"items": items}
    assert quote.calls[0].request.headers["X-Auth-Token"] == ACCESS_TOKEN
    assert request_body(create.calls[0]) == {
        "items": items,
        "payments": [{"provider_id": "custom", "amount": 48.0, "offline": True}],
    }
    refund.refresh_from_db()
    assert (refund.forwarding.state, refund.external_id) == (ForwardingState.ACCEPTED, "7")
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 4800

    # store/order/refund/created for it: BigCommerce lists the refund we created.
    responses.get(BC_ORDER_URL, json=order(14))
    responses.get(REFUNDS_URL, json=refunds_body(bc_refund(7, marker_note)))
    deliver(bc, REFUND_CREATED, event_id="bc-echo")

    assert Refund.objects.filter(bag=bc.bag).count() == 1
    assert money_moved(refund)[0] == 4800
    assert "already recorded" in InboundEvent.objects.get(event_id="bc-echo").outcome


@responses.activate
def test_bigcommerce_refusal_of_the_quote_fails_the_refund_and_moves_nothing(channel, bc):
    responses.post(
        BC_QUOTE_URL,
        status=422,
        json={"status": 422, "title": "Refund amount is greater than remaining amount", "type": "about:blank"},
    )

    channel_refund(APIClient(), channel, bc, {"skus": [{"order_sku_id": bc.mug.pk, "quantity_refunded": 1}]})

    refund = Refund.objects.get(bag=bc.bag)
    assert refund.status == RefundStatus.FAILED and nothing_planned(refund)
    assert "greater than remaining amount" in refund.errors.get().error_message
    assert OrderSku.objects.get(pk=bc.mug.pk).quantity_refunded == 0


@responses.activate
def test_woocommerce_refund_is_recorded_without_moving_money_there_then_ours_moves(channel, wc):
    create = responses.post(
        WC_REFUNDS_URL,
        status=201,
        json={
            "id": 5140,
            "date_created": "2026-03-02T15:15:04",
            "amount": "40.00",
            "reason": "x",
            "refunded_by": 1,
            "refunded_payment": False,
            "line_items": [],
        },
    )

    response = channel_refund(
        APIClient(),
        channel,
        wc,
        {"skus": [{"order_sku_id": wc.mug.pk, "quantity_refunded": 1}], "restock_items": True},
    )

    assert response.status_code == 201
    refund = Refund.objects.get(bag=wc.bag)
    assert request_body(create.calls[0]) == {
        "amount": "40.00",
        "reason": f"[violet-refund:{refund.pk}]",
        "api_refund": False,
        "api_restock": True,
        "line_items": [{"id": 311, "quantity": 1, "refund_total": "40.00"}],
    }
    assert create.calls[0].request.headers["Authorization"].startswith("Basic ")
    refund.refresh_from_db()
    assert (refund.forwarding.state, refund.external_id) == (ForwardingState.ACCEPTED, "5140")
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 4000


@responses.activate
def test_woocommerce_refusal_fails_the_refund_with_its_message(channel, wc):
    responses.post(
        WC_REFUNDS_URL,
        status=400,
        json={
            "code": "woocommerce_rest_invalid_order_refund",
            "message": "Refund amount is invalid.",
            "data": {"status": 400},
        },
    )

    channel_refund(APIClient(), channel, wc, {"amount_refunded": 1000})

    refund = Refund.objects.get(bag=wc.bag)
    assert refund.status == RefundStatus.FAILED and nothing_planned(refund)
    assert "Refund amount is invalid." in refund.errors.get().error_message


@responses.activate
def test_woocommerce_timeout_is_looked_up_before_a_resend_then_an_operator_can_go_without_it(channel, wc, settings):
    settings.FORWARDING_MAX_ATTEMPTS = 2
    create = responses.post(WC_REFUNDS_URL, status=504, body="Gateway Timeout")
    listed = responses.get(WC_REFUNDS_URL, json=[])  # WooCommerce lists none: it was not done

    channel_refund(APIClient(), channel, wc, {"amount_refunded": 1000})
    refund = Refund.objects.get(bag=wc.bag)
    assert refund.forwarding.state == ForwardingState.RETRYING
    from platforms.forwarding import refund_forward

    type(refund.forwarding).objects.filter(pk=refund.forwarding.pk).update(next_attempt_at=None)
    refund_forward(refund_id=refund.pk)

    refund.refresh_from_db()
    assert len(listed.calls) == 1  # looked up before the second create
    assert len(create.calls) == 2
    assert refund.forwarding.state == ForwardingState.STALLED
    assert refund in refunds_needing_attention() and nothing_planned(refund)

    run_on_commit(refund_forwarding_bypass, refund=refund, user=UserFactory(is_staff=True), note="store offline")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 1000

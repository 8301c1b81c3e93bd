"""Issue 14, item 5: POST /v1/orders/{id}/cancel and /v1/orders/{id}/bags/{id}/cancel. Cancelled at the
platform first (Shopify orderCancel, BigCommerce status 5, WooCommerce status cancelled), then the
full refund of the bag, forwarded like any channel refund; Violet's OrderCancellation answer."""

import json

import pytest
import responses
from rest_framework.test import APIClient

from notifications.models import WebhookEvent
from platforms.models import Platform
from refunds.models import BagStatus, ForwardingState, Refund, RefundStatus
from tests.platforms.bigcommerce_store import STORE_HASH
from tests.platforms.delivery import WOOCOMMERCE_STORE_URL
from tests.platforms.forwarding_world import funded_store, money_moved, request_body, run_on_commit
from tests.platforms.test_forwarding_shopify import CALCULATE_URL, CREATE_URL, calculated, created
from tests.refunds.api.conftest import make_channel

pytestmark = pytest.mark.django_db

ADMIN = "https://blue-mug.myshopify.com/admin/api/2025-01"
ORDER_URL = f"{ADMIN}/orders/450789469.json"
GRAPHQL_URL = f"{ADMIN}/graphql.json"


def cancel(channel, store, body=None, *, key="c-1", bag_level=True):
    url = (
        f"/v1/orders/{store.bag.order_id}/bags/{store.bag.pk}/cancel"
        if bag_level
        else f"/v1/orders/{store.bag.order_id}/cancel"
    )
    headers = {**channel.headers, **({"Idempotency-Key": key} if key else {})}
    return run_on_commit(APIClient().post, url, body if body is not None else {}, format="json", headers=headers)


def order_cancel_ok() -> dict:
    return {"data": {"orderCancel": {"job": {"id": "gid://shopify/Job/1", "done": False}, "orderCancelUserErrors": []}}}


@responses.activate
def test_shopify_cancel_then_full_refund_forwarded_then_money(channel, funded_shopify):
    responses.get(ORDER_URL, json={"order": {"id": 450789469, "cancelled_at": None}})
    graphql = responses.post(GRAPHQL_URL, json=order_cancel_ok())
    responses.post(CALCULATE_URL, json=calculated("118.00"))
    create = responses.post(CREATE_URL, json=created(), status=201)

    response = cancel(channel, funded_shopify, {"reason": "Shopper changed their mind", "reason_code": "CUSTOMER"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["message"], body["order_id"]) == (
        "CANCELED",
        "All external orders were cancelled.",
        funded_shopify.bag.order_id,
    )
    [bag] = body["cancelled_bags"]
    assert (bag["bag_id"], bag["status"], bag["external_order_id"], bag["originated_by"]) == (
        funded_shopify.bag.pk,
        "CANCELED",
        "450789469",
        "VIOLET",
    )
    assert bag["errors"] == [] and bag["refund"]["amount"] == 11800
    sent = json.loads(graphql.calls[0].request.body)
    assert "orderCancel" in sent["query"]
    assert sent["variables"] == {
        "orderId": "gid://shopify/Order/450789469",
        "reason": "CUSTOMER",
        "refund": False,
        "restock": True,
        "notifyCustomer": False,
        "staffNote": f"[violet-cancel:{funded_shopify.bag.pk}] Shopper changed their mind",
    }
    funded_shopify.bag.refresh_from_db()
    assert funded_shopify.bag.status == BagStatus.CANCELED
    assert WebhookEvent.objects.filter(bag_id=funded_shopify.bag.pk, event_type="ORDER_CANCELLED").count() == 1
    refund = Refund.objects.get(bag=funded_shopify.bag)
    assert refund.forwarding.state == ForwardingState.ACCEPTED
    assert request_body(create.calls[0])["refund"]["transactions"][0]["amount"] == "118.00"
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 11800

    # The same request again: the first cancellation, nothing sent to Shopify again.
    again = cancel(channel, funded_shopify, {"reason": "Shopper changed their mind", "reason_code": "CUSTOMER"})
    assert again.status_code == 200 and again.json()["cancelled_bags"][0]["refund"]["id"] == refund.pk
    assert len(graphql.calls) == 1 and Refund.objects.filter(bag=funded_shopify.bag).count() == 1
    # The same key with another body: refused, in the one error shape.
    other = cancel(channel, funded_shopify, {"reason": "Something else"})
    assert other.status_code == 422 and other.json()["error_code"] == "idempotency_key_reused"


@responses.activate
def test_shopify_refusal_is_a_cancellation_failure_and_nothing_happens(channel, funded_shopify):
    responses.get(ORDER_URL, json={"order": {"id": 450789469, "cancelled_at": None}})
    responses.post(
        GRAPHQL_URL,
        json={
            "data": {
                "orderCancel": {
                    "job": None,
                    "orderCancelUserErrors": [
                        {"field": ["orderId"], "message": "Cannot cancel an order with fulfillments", "code": "INVALID"}
                    ],
                }
            }
        },
    )

    before = funded_shopify.bag.status
    response = cancel(channel, funded_shopify)

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "CANCELLATION_FAILURE"
    [bag] = body["cancelled_bags"]
    assert bag["status"] == "CANCELLATION_FAILURE" and bag["refund"] is None
    assert bag["errors"][0]["error_code"] == "platform_refused"
    assert "Cannot cancel an order with fulfillments" in bag["errors"][0]["message"]
    funded_shopify.bag.refresh_from_db()
    assert funded_shopify.bag.status == before != BagStatus.CANCELED
    assert not Refund.objects.filter(bag=funded_shopify.bag).exists()


def test_an_ineligible_bag_is_a_cancellation_failure_and_an_order_mixes_them(channel):
    sfcc = funded_store(channel, Platform.SFCC, order_id="00099001", line_ids=("1", "2"), credentials={})
    response = cancel(channel, sfcc, key=None, bag_level=False)
    body = response.json()
    assert body["status"] == "CANCELED"  # SFCC cannot cancel: the network cancels and refunds, merchant told
    refund = Refund.objects.get(bag=sfcc.bag)
    assert refund.forwarding.state == ForwardingState.NOT_FORWARDED

    again = cancel(channel, sfcc, key=None, bag_level=False)
    [bag] = again.json()["cancelled_bags"]
    assert again.json()["status"] == "CANCELLATION_FAILURE"
    assert bag["errors"][0]["error_code"] == "bag_not_cancelable" and "CANCELED" in bag["errors"][0]["message"]


@responses.activate
def test_bigcommerce_and_woocommerce_cancel_by_status(channel, funded_bigcommerce, funded_woocommerce):
    bc, wc = funded_bigcommerce, funded_woocommerce
    status = responses.put(f"https://api.bigcommerce.com/stores/{STORE_HASH}/v2/orders/250", json={"id": 250})
    responses.post(
        f"https://api.bigcommerce.com/stores/{STORE_HASH}/v3/orders/250/payment_actions/refund_quotes",
        status=503,
    )
    assert cancel(channel, bc).json()["status"] == "CANCELED"
    assert request_body(status.calls[0]) == {"status_id": 5}
    bc_refund = Refund.objects.get(bag=bc.bag)
    assert bc_refund.status == RefundStatus.PROCESSING  # its refund waits for BigCommerce (unreachable)

    wc_status = responses.put(f"{WOOCOMMERCE_STORE_URL}/wp-json/wc/v3/orders/5120", json={"id": 5120})
    responses.post(f"{WOOCOMMERCE_STORE_URL}/wp-json/wc/v3/orders/5120/refunds", status=201, json={"id": 5150})
    assert cancel(channel, wc, key="c-2").json()["status"] == "CANCELED"
    assert request_body(wc_status.calls[0]) == {"status": "cancelled"}
    assert Refund.objects.get(bag=wc.bag).status == RefundStatus.COMPLETED


def test_another_apps_order_is_a_404(channel, funded_shopify):
    stranger = make_channel()
    response = APIClient().post(
        f"/v1/orders/{funded_shopify.bag.order_id}/cancel", {}, format="json", headers=stranger.headers
    )
    assert response.status_code == 404 and response.json()["error_code"]

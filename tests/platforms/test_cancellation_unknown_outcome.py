"""A channel cancellation whose platform answer was lost is never answered as a failure without a
look: the order is read back at the platform (Shopify `cancelled_at`, BigCommerce `status_id` 5,
WooCommerce status `cancelled`). Cancelled there -> CANCELED and the full refund; shown not cancelled
-> CANCELLATION_FAILURE, nothing recorded (Shopify, which cancels as a job: read again with backoff,
and still open is no answer); unreadable -> 503 cancellation_outcome_unknown with Retry-After,
nothing recorded, and the same request sent again completes it."""

import pytest
import requests
import responses

from notifications.models import WebhookEvent
from platforms.models import Platform
from refunds.models import BagStatus, Refund, RefundStatus
from tests.platforms.bigcommerce_store import STORE_HASH
from tests.platforms.delivery import SHOPIFY_SECRET, WOOCOMMERCE_STORE_URL, deliver
from tests.platforms.forwarding_world import funded_platform_store, money_moved, request_body
from tests.platforms.test_cancellation import GRAPHQL_URL, ORDER_URL, cancel, order_cancel_ok
from tests.platforms.test_forwarding_shopify import CALCULATE_URL, CREATE_URL, calculated, created

pytestmark = pytest.mark.django_db

BC_ORDER_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v2/orders/250"
WC_ORDER_URL = f"{WOOCOMMERCE_STORE_URL}/wp-json/wc/v3/orders/5120"


def nothing_recorded(bag, status_before) -> bool:
    bag.refresh_from_db()
    return (
        bag.status == status_before
        and not Refund.objects.filter(bag=bag).exists()
        and not WebhookEvent.objects.filter(bag_id=bag.pk, event_type="ORDER_CANCELLED").exists()
    )


@responses.activate
def test_shopify_lost_answer_but_cancelled_there_is_a_cancellation_and_full_refund(channel, funded_shopify):
    shop = funded_shopify
    # Before the mutation: not cancelled. The mutation's answers are lost (503 on every attempt).
    # Read back afterwards: Shopify ran the cancel.
    responses.get(ORDER_URL, json={"order": {"id": 450789469, "cancelled_at": None}})
    responses.get(ORDER_URL, json={"order": {"id": 450789469, "cancelled_at": "2026-12-02T06:30:00-05:00"}})
    graphql = responses.post(GRAPHQL_URL, status=503, body="Service Unavailable")
    responses.post(CALCULATE_URL, json=calculated("118.00"))
    responses.post(CREATE_URL, json=created(), status=201)

    response = cancel(channel, shop)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "CANCELED"
    [bag] = body["cancelled_bags"]
    assert bag["status"] == "CANCELED" and bag["errors"] == [] and bag["refund"]["amount"] == 11800
    assert len(graphql.calls) == 3  # the client's own bounded retries, then the read-back
    shop.bag.refresh_from_db()
    assert shop.bag.status == BagStatus.CANCELED
    refund = Refund.objects.get(bag=shop.bag)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 11800


@responses.activate
def test_bigcommerce_lost_answer_and_not_cancelled_there_is_a_failure_and_nothing_happens(channel, funded_bigcommerce):
    bc = funded_bigcommerce
    put = responses.put(BC_ORDER_URL, body=requests.ConnectionError("reset by peer"))
    read = responses.get(BC_ORDER_URL, json={"id": 250, "status_id": 11, "status": "Awaiting Fulfillment"})
    before = bc.bag.status

    response = cancel(channel, bc)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "CANCELLATION_FAILURE"
    [bag] = body["cancelled_bags"]
    assert bag["status"] == "CANCELLATION_FAILURE" and bag["refund"] is None
    assert bag["errors"][0]["error_code"] == "platform_unavailable"
    assert "shows order 250 not cancelled" in bag["errors"][0]["message"]
    assert len(put.calls) == 3 and len(read.calls) == 1
    assert nothing_recorded(bc.bag, before)


@responses.activate
def test_bigcommerce_lost_answer_and_cancelled_there_goes_on(channel, funded_bigcommerce):
    bc = funded_bigcommerce
    responses.put(BC_ORDER_URL, body=requests.ReadTimeout("read timed out"))
    responses.get(BC_ORDER_URL, json={"id": 250, "status_id": 5, "status": "Cancelled"})
    responses.post(
        f"https://api.bigcommerce.com/stores/{STORE_HASH}/v3/orders/250/payment_actions/refund_quotes", status=503
    )

    body = cancel(channel, bc).json()

    assert body["status"] == "CANCELED" and body["cancelled_bags"][0]["refund"]["amount"] == 11800
    bc.bag.refresh_from_db()
    assert bc.bag.status == BagStatus.CANCELED
    assert Refund.objects.get(bag=bc.bag).status == RefundStatus.PROCESSING  # its refund waits for BigCommerce


@responses.activate
def test_woocommerce_unknown_outcome_is_a_503_with_retry_after_then_the_repeat_completes(
    channel, settings, funded_woocommerce
):
    settings.CANCELLATION_RETRY_AFTER_SECONDS = 45
    wc = funded_woocommerce
    responses.put(WC_ORDER_URL, status=502, body="Bad Gateway")
    read = responses.get(WC_ORDER_URL, body=requests.ConnectTimeout("no route"))
    before = wc.bag.status

    response = cancel(channel, wc, bag_level=False)

    assert response.status_code == 503
    assert response["Retry-After"] == "45"
    body = response.json()
    assert body["error_code"] == "cancellation_outcome_unknown" and body["status"] == 503
    assert body["outcome_unknown_bag_ids"] == [wc.bag.pk] and body["cancelled_bag_ids"] == []
    assert "may or may not be cancelled" in body["message"] and "Nothing was refunded" in body["message"]
    assert len(read.calls) == 3
    assert nothing_recorded(wc.bag, before)

    # The platform answers again: the same request (same key) cancels and refunds, once.
    responses.replace(responses.PUT, WC_ORDER_URL, json={"id": 5120, "status": "cancelled"})
    responses.post(f"{WC_ORDER_URL}/refunds", status=201, json={"id": 5150})
    again = cancel(channel, wc, bag_level=False)

    assert again.status_code == 200 and again.json()["status"] == "CANCELED"
    puts = [call for call in responses.calls if call.request.method == "PUT"]
    assert len(puts) == 4 and request_body(puts[-1]) == {"status": "cancelled"}
    refund = Refund.objects.get(bag=wc.bag)
    assert refund.status == RefundStatus.COMPLETED and refund.amount == 11800
    wc.bag.refresh_from_db()
    assert wc.bag.status == BagStatus.CANCELED


@responses.activate
def test_an_unknown_bag_in_an_order_names_the_bags_this_request_did_cancel(channel, funded_shopify, funded_woocommerce):
    # A second bag of the same order, at a WooCommerce store whose answers are all lost.
    shop, wc = funded_shopify, funded_woocommerce
    wc.bag.order = shop.bag.order
    wc.bag.save(update_fields=["order"])
    responses.get(ORDER_URL, json={"order": {"id": 450789469, "cancelled_at": None}})
    responses.post(GRAPHQL_URL, json=order_cancel_ok())
    responses.post(CALCULATE_URL, json=calculated("118.00"))
    responses.post(CREATE_URL, json=created(), status=201)
    responses.put(WC_ORDER_URL, body=requests.ReadTimeout("read timed out"))
    responses.get(WC_ORDER_URL, status=500)
    wc_before = wc.bag.status

    response = cancel(channel, shop, bag_level=False)

    assert response.status_code == 503 and response.has_header("Retry-After")
    body = response.json()
    assert body["outcome_unknown_bag_ids"] == [wc.bag.pk] and body["cancelled_bag_ids"] == [shop.bag.pk]
    assert f"Bags cancelled by this request: {shop.bag.pk}." in body["message"]
    shop.bag.refresh_from_db()
    assert shop.bag.status == BagStatus.CANCELED and Refund.objects.get(bag=shop.bag).amount == 11800
    assert nothing_recorded(wc.bag, wc_before)


# Shopify performs `orderCancel` as a job: a read right after a lost answer may show the order still
# open although the job will cancel it. Such a read is never final (capabilities.cancel_settles_later).


def _shopify_shop(channel):
    # The funded_shopify fixture's store, with the webhook secret the orders/cancelled delivery signs with.
    return funded_platform_store(channel, Platform.SHOPIFY, secret=SHOPIFY_SECRET)


OPEN = {"order": {"id": 450789469, "cancelled_at": None}}
CANCELLED = {"order": {"id": 450789469, "cancelled_at": "2026-12-02T06:30:00-05:00"}}


@responses.activate
def test_shopify_lost_answer_open_at_first_then_cancelled_on_a_later_read_is_cancelled_and_refunded_once(channel):
    shop = _shopify_shop(channel)
    # Before the mutation: open. Its answers are lost. Read back: open (the job has not run), then
    # cancelled (it ran).
    responses.get(ORDER_URL, json=OPEN)
    responses.get(ORDER_URL, json=OPEN)
    responses.get(ORDER_URL, json=CANCELLED)
    graphql = responses.post(GRAPHQL_URL, body=requests.ReadTimeout("read timed out"))
    responses.post(CALCULATE_URL, json=calculated("118.00"))
    create = responses.post(CREATE_URL, json=created(), status=201)

    response = cancel(channel, shop)

    assert response.status_code == 200, response.json()
    [bag] = response.json()["cancelled_bags"]
    assert bag["status"] == "CANCELED" and bag["errors"] == [] and bag["refund"]["amount"] == 11800
    reads = [call for call in responses.calls if call.request.method == "GET"]
    assert len(reads) == 3 and len(graphql.calls) == 3  # before the cancel, then two read-backs
    refund = Refund.objects.get(bag=shop.bag)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 11800
    assert len(create.calls) == 1

    # The channel sends the same request again: the same cancellation, still one refund.
    again = cancel(channel, shop)
    assert again.status_code == 200 and again.json()["cancelled_bags"][0]["refund"]["id"] == refund.pk
    assert Refund.objects.filter(bag=shop.bag).count() == 1 and money_moved(refund)[0] == 11800


@responses.activate
def test_shopify_lost_answer_still_open_after_every_read_is_a_503_then_the_repeat_finds_the_truth(channel, settings):
    settings.CANCELLATION_READBACK_ATTEMPTS = 4
    shop = _shopify_shop(channel)
    read = responses.get(ORDER_URL, json=OPEN)
    responses.post(GRAPHQL_URL, status=503, body="Service Unavailable")
    before = shop.bag.status

    response = cancel(channel, shop)

    assert response.status_code == 503 and response.has_header("Retry-After")
    body = response.json()
    assert body["error_code"] == "cancellation_outcome_unknown"
    assert body["outcome_unknown_bag_ids"] == [shop.bag.pk] and body["cancelled_bag_ids"] == []
    assert "still shows it open after 4 reads" in body["message"] and "background job" in body["message"]
    assert len(read.calls) == 1 + 4  # before the cancel, then every read-back
    assert nothing_recorded(shop.bag, before)

    # The job ran: Shopify's orders/cancelled ("Refund later": no refund in it) marks the bag CANCELED.
    deliver(shop, "orders_cancelled_without_refund", event_id="job-ran")
    shop.bag.refresh_from_db()
    assert shop.bag.status == BagStatus.CANCELED and not Refund.objects.filter(bag=shop.bag).exists()

    # The channel's repeat (same Idempotency-Key) finds the order cancelled and refunds the bag, once.
    responses.post(CALCULATE_URL, json=calculated("118.00"))
    responses.post(CREATE_URL, json=created(), status=201)
    graphql_before = len([call for call in responses.calls if call.request.url == GRAPHQL_URL])
    again = cancel(channel, shop)

    assert again.status_code == 200, again.json()
    [bag] = again.json()["cancelled_bags"]
    assert bag["status"] == "CANCELED" and bag["refund"]["amount"] == 11800
    assert len([call for call in responses.calls if call.request.url == GRAPHQL_URL]) == graphql_before
    refund = Refund.objects.get(bag=shop.bag)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 11800
    assert cancel(channel, shop).json()["cancelled_bags"][0]["refund"]["id"] == refund.pk
    assert Refund.objects.filter(bag=shop.bag).count() == 1


@responses.activate
def test_shopify_repeat_after_a_503_while_the_job_has_run_but_its_webhook_not_arrived(channel):
    shop = _shopify_shop(channel)
    responses.get(ORDER_URL, json=OPEN)
    responses.post(GRAPHQL_URL, body=requests.ConnectionError("reset by peer"))
    before = shop.bag.status

    assert cancel(channel, shop).status_code == 503
    assert nothing_recorded(shop.bag, before)

    # The repeat: Shopify now shows the order cancelled, so nothing is sent again and the bag refunds.
    responses.replace(responses.GET, ORDER_URL, json=CANCELLED)
    responses.post(CALCULATE_URL, json=calculated("118.00"))
    responses.post(CREATE_URL, json=created(), status=201)
    graphql_before = len([call for call in responses.calls if call.request.url == GRAPHQL_URL])

    again = cancel(channel, shop)

    assert again.status_code == 200 and again.json()["status"] == "CANCELED"
    assert len([call for call in responses.calls if call.request.url == GRAPHQL_URL]) == graphql_before
    shop.bag.refresh_from_db()
    assert shop.bag.status == BagStatus.CANCELED and Refund.objects.get(bag=shop.bag).amount == 11800

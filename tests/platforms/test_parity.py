"""The parity check (platforms.parity): for every platform, a refund whose webhook (or poll) never
came is found by reading the platform's order through its API (recorded HTTP with `responses`),
recorded once through the same reconcile path as a webhook, marked PARITY_CHECK and counted in the
admin triage; the bag's `date_last_consolidated` is set, and a second read records nothing new."""

import copy
import datetime as dt

import pytest
import responses

from platforms import parity, tasks
from platforms.clients.sfcc import SfccClient
from platforms.models import Platform, StoreConnection
from refunds.admin.selectors import triage_counts
from refunds.models import Bag, BagStatus, Refund, RefundSource
from tests.platforms import bigcommerce_store as bc
from tests.platforms.conftest import ecwid_order_url, make_store
from tests.platforms.delivery import WOOCOMMERCE_STORE_URL, fixture_json
from tests.platforms.test_sfcc_poll import CREDENTIALS as SFCC_CREDENTIALS
from tests.platforms.test_sfcc_poll import ORDERS_URL as SFCC_ORDERS_URL
from tests.platforms.test_wix import MUG_LINE, REFUNDED_ORDER_ID, TOWEL_LINE

WOO_CREDENTIALS = {"store_url": WOOCOMMERCE_STORE_URL, "consumer_key": "ck_x", "consumer_secret": "cs_x"}


@pytest.fixture(autouse=True)
def _fast_parity(settings):
    # Spacing between calls stays real but tiny; the grace keeps the fixtures' refunds (all older).
    settings.PARITY_CHECK_CALLS_PER_MINUTE = dict.fromkeys(Platform.values, 600_000)


def _connected(store):
    StoreConnection.objects.filter(pk=store.connection.pk).update(status=StoreConnection.Status.CONNECTED)
    return store


def _check_finds(store, expected_external_id: str):
    """Run the beat task; the missing refund is recorded once, marked, counted; a re-read adds nothing."""
    found = tasks.check_platform_parity.delay().get()

    refund = Refund.objects.get(bag=store.bag)
    assert found == 1
    assert refund.external_id == expected_external_id
    assert refund.source == RefundSource.PARITY_CHECK
    assert refund.inbound_event is None
    store.bag.refresh_from_db()
    assert store.bag.date_last_consolidated is not None
    assert triage_counts().found_by_parity_last_7d == 1

    # Due again (a slow round later): the platform still shows the refund, nothing new is recorded.
    Bag.objects.filter(pk=store.bag.pk).update(date_last_consolidated=None)
    assert parity.bags_parity_check().refunds_found == 0
    assert Refund.objects.filter(bag=store.bag).count() == 1
    return refund


@responses.activate
def test_shopify_refund_without_its_webhook_is_found(db):
    store = _connected(
        make_store(
            Platform.SHOPIFY,
            order_id="450789469",
            line_ids=("466157049", "518995019"),
            credentials={"shop_domain": "blue-mug.myshopify.com", "access_token": "shpat_test"},
        )
    )
    order = fixture_json("shopify", "orders_cancelled_with_refund.json")
    api = responses.get("https://blue-mug.myshopify.com/admin/api/2025-01/orders/450789469.json", json={"order": order})

    refund = _check_finds(store, str(order["refunds"][0]["id"]))
    assert api.calls[0].request.headers["X-Shopify-Access-Token"] == "shpat_test"
    assert refund.amount > 0


@responses.activate
def test_ecwid_cancellation_without_its_webhook_is_found(db):
    store = _connected(
        make_store(
            Platform.ECWID,
            order_id="K8XTQ",
            line_ids=("123456789", "123456790"),
            credentials={"store_id": "1003", "access_token": "secret_ecwidtoken"},
        )
    )
    responses.get(ecwid_order_url("1003", "K8XTQ"), json=fixture_json("ecwid", "order_cancelled.json"))

    refund = _check_finds(store, "cancel:K8XTQ")
    assert refund.amount == 11800  # everything still refundable
    store.bag.refresh_from_db()
    assert store.bag.status == BagStatus.CANCELED


@responses.activate
def test_wix_refund_without_its_webhook_is_found(db):
    store = _connected(
        make_store(
            Platform.WIX,
            order_id=REFUNDED_ORDER_ID,
            line_ids=(MUG_LINE, TOWEL_LINE),
            credentials={"api_key": "IST.test-key-0123456789", "account_id": "a", "site_id": "s"},
            placed_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        )
    )
    order = copy.deepcopy(fixture_json("wix", "order_canceled.json")["data"]["actionEvent"]["body"]["order"])
    order |= {"id": REFUNDED_ORDER_ID, "status": "APPROVED", "createdDate": "2026-03-01T10:00:00.000Z"}
    body = fixture_json("wix", "refund_completed.json")["data"]["actionEvent"]["body"]
    transactions = body["orderTransactions"] | {"refunds": [body["refund"]]}
    responses.get(f"https://www.wixapis.com/ecom/v1/orders/{REFUNDED_ORDER_ID}", json={"order": order})
    responses.get(
        f"https://www.wixapis.com/ecom/v1/payments/orders/{REFUNDED_ORDER_ID}", json={"orderTransactions": transactions}
    )

    refund = _check_finds(store, body["refund"]["id"])
    assert refund.amount == 5320  # the SUCCEEDED transaction


@responses.activate
def test_sfcc_cancellation_the_poll_missed_is_found(db):
    store = _connected(
        make_store(
            Platform.SFCC,
            order_id="00001234",
            line_ids=("a1b2c3d4e5f6a1b2c3d4e5f6", "f6e5d4c3b2a1f6e5d4c3b2a1"),
            credentials=SFCC_CREDENTIALS,
        )
    )
    responses.post(SfccClient.token_url, json=fixture_json("sfcc", "token.json"))
    order = fixture_json("sfcc", "orders_search.json")["data"][0]
    api = responses.get(f"{SFCC_ORDERS_URL}/00001234", json=order)

    refund = _check_finds(store, "cancel:00001234")
    assert refund.amount == 11800
    assert "siteId=RefArch" in api.calls[0].request.url


@responses.activate
def test_bigcommerce_refund_without_its_webhook_is_found(db):
    store = _connected(
        make_store(
            Platform.BIGCOMMERCE,
            order_id="250",
            line_ids=(bc.MUG, bc.TOWEL),
            credentials={"store_hash": bc.STORE_HASH, "access_token": bc.ACCESS_TOKEN},
        )
    )
    bc.mock_api(refunds=(bc.partial_refund(),))

    _check_finds(store, str(bc.partial_refund()["id"]))


@responses.activate
def test_woocommerce_refund_without_its_webhook_is_found(db):
    store = _connected(
        make_store(Platform.WOOCOMMERCE, order_id="5120", line_ids=("311", "312"), credentials=WOO_CREDENTIALS)
    )
    order = fixture_json("woocommerce", "order_updated_partial_refund.json")
    responses.get(f"{WOOCOMMERCE_STORE_URL}/wp-json/wc/v3/orders/5120", json=order)
    detail = responses.get(
        f"{WOOCOMMERCE_STORE_URL}/wp-json/wc/v3/orders/5120/refunds/5125",
        json=fixture_json("woocommerce", "refund_5125.json"),
    )

    refund = _check_finds(store, "5125")
    assert refund.amount == 4820
    assert detail.call_count == 1  # the recorded refund's detail is not read again


@responses.activate
def test_a_refund_its_webhook_already_recorded_is_not_counted(db, shopify_store):
    """Webhook first, parity second: the same refund id, nothing recorded twice, nothing counted."""
    from tests.platforms.delivery import deliver

    _connected(shopify_store)
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="wh-parity")
    assert Refund.objects.get().source == RefundSource.PLATFORM_WEBHOOK
    order = fixture_json("shopify", "orders_cancelled_with_refund.json")
    responses.get("https://blue-mug.myshopify.com/admin/api/2025-01/orders/450789469.json", json={"order": order})

    assert parity.bags_parity_check().refunds_found == 0
    assert Refund.objects.count() == 1
    assert triage_counts().found_by_parity_last_7d == 0


@responses.activate
def test_a_throttled_platform_is_left_for_the_next_run_and_the_bag_stays_due(db):
    store = _connected(
        make_store(
            Platform.ECWID,
            order_id="K8XTQ",
            line_ids=("123456789", "123456790"),
            credentials={"store_id": "1003", "access_token": "secret_ecwidtoken"},
        )
    )
    responses.get(ecwid_order_url("1003", "K8XTQ"), status=429, headers={"Retry-After": "0"}, json={})

    result = parity.bags_parity_check()

    assert result.bags_checked == 1 and result.refunds_found == 0
    assert "429" in result.errors[0]
    store.bag.refresh_from_db()
    assert store.bag.date_last_consolidated is None  # checked again next run


def test_calls_are_spaced_per_platform(db):
    """60 calls a minute = one a second: the pacer waits, per platform, independently."""
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    pacer = parity.Pacer({"SHOPIFY": 60, "ECWID": 120}, clock=lambda: now[0], sleep=sleep)
    pacer.take("SHOPIFY", 1)
    pacer.take("ECWID", 1)
    pacer.take("SHOPIFY", 1)
    pacer.take("ECWID", 1)
    assert slept == [1.0]  # the second ECWID call was already due after 0.5 s

"""WooCommerce end to end: signed `order.updated` -> receiver -> refund details read from the (mocked)
REST API -> Refund rows; bad input at the receiver; the setup ping; the client; parallel duplicates."""

import pytest
import responses
from django.test import override_settings

from platforms.adapters import webhook_adapter_for_slug
from platforms.adapters.base import (
    RefundLine,
    parse_json,
)
from platforms.adapters.woocommerce import WooCommerceAdapter, parse_refund_detail, woocommerce_signature
from platforms.clients.base import ConnectionMisconfigured, PlatformAuthenticationFailed
from platforms.clients.woocommerce import WooCommerceClient
from platforms.models import InboundEvent, Platform
from refunds.models import Refund, RefundSource
from tests.factories import BagFactory, StoreConnectionFactory
from tests.parallel import run_in_parallel
from tests.platforms.conftest import make_store
from tests.platforms.delivery import (
    WOOCOMMERCE_STORE_URL,
    assert_rejected,
    deliver,
    fixture_json,
    fixture_text,
    post_webhook,
)
from violet_refunds.money import AmountParts

STORE_URL = WOOCOMMERCE_STORE_URL
WEBHOOK_SECRET = "wc-hook-secret-p4Zt8sQe2LmN0vXa"
CONSUMER_KEY = "ck_0123456789abcdef0123456789abcdef01234567"
CONSUMER_SECRET = "cs_76543210fedcba9876543210fedcba9876543210"
REFUNDS_URL = f"{STORE_URL}/wp-json/wc/v3/orders/5120/refunds"
MUG, TOWEL = "311", "312"


@pytest.fixture
def wc_store(db):
    return make_store(
        Platform.WOOCOMMERCE,
        order_id="5120",
        line_ids=(MUG, TOWEL),
        webhook_secret=WEBHOOK_SECRET,
        credentials={"store_url": STORE_URL, "consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET},
    )


PARTIAL_REFUND = "order_updated_partial_refund"  # captured order.updated deliveries, signed by deliver()
CANCELLED = "order_updated_cancelled"


def refunded(*refunds: tuple[int, str]) -> dict:
    """The changes that make the partial-refund delivery a refunded order with these (id, total) refunds."""
    return {
        "status": "refunded",
        "refunds": [{"id": refund_id, "reason": "", "total": total} for refund_id, total in refunds],
    }


def mock_refund(refund_id: int, status: int = 200):
    name = f"refund_{refund_id}.json"
    if status == 200:
        return responses.get(f"{REFUNDS_URL}/{refund_id}", json=fixture_json("woocommerce", name))
    return responses.get(f"{REFUNDS_URL}/{refund_id}", status=status, json={"code": "x", "data": {"status": status}})


def parts(refund: Refund) -> tuple[int, int, int, int]:
    return refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount


def skus(refund: Refund) -> dict[str, tuple[int, int | None]]:
    return {line.order_sku.external_id: (line.quantity_refunded, line.amount_refunded) for line in refund.skus.all()}


# --- Rules ---


@responses.activate
def test_partial_refund_is_recorded_with_the_lines_shipping_and_tax_read_from_the_api(wc_store):
    api = mock_refund(5125)
    response = deliver(wc_store, PARTIAL_REFUND).response

    assert response.status_code == 200
    assert response.json()["status"] == "received"
    refund = Refund.objects.get(bag=wc_store.bag)
    assert refund.external_id == "5125"
    assert parts(refund) == (4820, 4000, 500, 320)
    assert refund.shipping_tax_amount == 0
    assert (refund.refund_currency, refund.reason) == ("USD", "Customer returned one mug")
    assert refund.source == RefundSource.PLATFORM_WEBHOOK
    assert skus(refund) == {MUG: (1, 4000)}
    event = InboundEvent.objects.get()
    assert (event.status, event.topic) == (InboundEvent.Status.PROCESSED, "order.updated")
    assert refund.inbound_event == event
    assert api.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_cancelled_order_refunds_everything_left(wc_store):
    deliver(wc_store, CANCELLED)

    refund = Refund.objects.get(bag=wc_store.bag)
    assert refund.external_id == "cancel:5120"
    assert parts(refund) == (11800, 10000, 1000, 800)
    assert {sku: quantity for sku, (quantity, _) in skus(refund).items()} == {MUG: 2, TOWEL: 1}
    assert "cancelled" in refund.reason
    assert len(responses.calls) == 0  # nothing to read: the body says it all


@responses.activate
def test_refunded_status_without_refund_detail_refunds_everything_left(wc_store):
    deliver(wc_store, PARTIAL_REFUND, changes=refunded())

    assert list(Refund.objects.values_list("external_id", "amount")) == [("cancel:5120", 11800)]


@responses.activate
def test_fully_refunded_in_two_refunds_records_both_and_exactly_the_bag(wc_store):
    mock_refund(5131)
    mock_refund(5125)
    deliver(wc_store, PARTIAL_REFUND, changes=refunded((5131, "-69.80"), (5125, "-48.20")))

    refunds = {r.external_id: r for r in Refund.objects.filter(bag=wc_store.bag)}
    assert set(refunds) == {"5125", "5131"}  # the status's "what is left" is nothing
    assert parts(refunds["5131"]) == (6980, 6000, 500, 480)
    assert skus(refunds["5131"]) == {MUG: (1, 4000), TOWEL: (1, 2000)}
    assert sum(r.amount for r in refunds.values()) == wc_store.bag.total == 11800
    assert "already fully refunded, so cancel:5120 records nothing" in InboundEvent.objects.get().outcome


@responses.activate
def test_partial_refund_then_cancel_refunds_only_what_is_left(wc_store):
    mock_refund(5125)
    deliver(wc_store, PARTIAL_REFUND, event_id="d1")
    earlier_refund = {"refunds": [{"id": 5125, "reason": "", "total": "-48.20"}]}
    deliver(wc_store, CANCELLED, changes=earlier_refund, event_id="d2")

    refunds = {r.external_id: r for r in Refund.objects.filter(bag=wc_store.bag)}
    assert {k: parts(r) for k, r in refunds.items()} == {
        "5125": (4820, 4000, 500, 320),
        "cancel:5120": (6980, 6000, 500, 480),
    }
    assert len(responses.calls) == 1  # the recorded refund is not read again


@responses.activate
def test_refund_already_recorded_is_not_read_again(wc_store):
    mock_refund(5125)
    for delivery_id in ("d1", "d2"):
        deliver(wc_store, PARTIAL_REFUND, event_id=delivery_id)

    assert Refund.objects.count() == 1
    assert len(responses.calls) == 1
    statuses = dict(InboundEvent.objects.values_list("event_id", "status"))
    assert sorted(statuses.values()) == [InboundEvent.Status.IGNORED, InboundEvent.Status.PROCESSED]


@responses.activate
def test_refund_by_amount_only_is_divided_pro_rata(wc_store):
    detail = fixture_json("woocommerce", "refund_5125.json") | {
        "amount": "11.80",
        "line_items": [],
        "shipping_lines": [],
    }
    responses.get(f"{REFUNDS_URL}/5125", json=detail)
    deliver(wc_store, PARTIAL_REFUND, changes={"refunds": [{"id": 5125, "reason": "Goodwill", "total": "-11.80"}]})

    refund = Refund.objects.get()
    assert (refund.external_id, *parts(refund)) == ("5125", 1180, 1000, 100, 80)
    assert skus(refund) == {}


@responses.activate
def test_store_without_api_credentials_still_gets_its_refund_by_amount(wc_store):
    wc_store.connection.credentials = {}
    wc_store.connection.save()
    deliver(wc_store, PARTIAL_REFUND)

    refund = Refund.objects.get()
    assert (refund.external_id, *parts(refund)) == ("5125", 4820, 4085, 408, 327)
    assert len(responses.calls) == 0


@responses.activate
def test_refund_deleted_in_woocommerce_since_is_not_recorded(wc_store):
    mock_refund(5125, status=404)
    deliver(wc_store, PARTIAL_REFUND)

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "completed and no refund" in event.outcome


@responses.activate
def test_order_without_refunds_in_another_status_is_ignored(wc_store):
    deliver(wc_store, PARTIAL_REFUND, changes={"status": "processing", "refunds": []})

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "WooCommerce order status processing and no refund" in event.outcome
    assert len(responses.calls) == 0


@responses.activate
def test_order_that_is_not_ours_awaits_its_order_without_calling_the_api(wc_store):
    deliver(wc_store, PARTIAL_REFUND, changes={"id": 9999})

    event = InboundEvent.objects.get()
    assert (event.status, event.order_id) == (InboundEvent.Status.AWAITING_ORDER, "9999")
    assert "Order 9999 is not (yet) a bag" in event.outcome
    assert len(responses.calls) == 0


@pytest.mark.parametrize("topic", ["order.created", "order.deleted", "product.updated"])
@responses.activate
def test_other_topics_are_ignored(wc_store, topic):
    response = deliver(wc_store, CANCELLED, topic=topic).response

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.status, event.topic) == (InboundEvent.Status.IGNORED, topic)
    assert not Refund.objects.exists()


@responses.activate
def test_api_5xx_is_retried_by_the_task_until_it_works(wc_store):
    for _ in range(3):
        responses.get(f"{REFUNDS_URL}/5125", status=502, body="Bad Gateway")
    mock_refund(5125)
    deliver(wc_store, PARTIAL_REFUND)

    event = InboundEvent.objects.get()
    assert (event.status, event.error, event.attempts) == (InboundEvent.Status.PROCESSED, "", 2)
    assert Refund.objects.get().external_id == "5125"


@responses.activate
def test_rejected_api_keys_fail_the_event_without_retrying(wc_store):
    api = mock_refund(5125, status=401)
    deliver(wc_store, PARTIAL_REFUND)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.FAILED
    assert "PlatformAuthenticationFailed" in event.error
    assert CONSUMER_SECRET not in event.error
    assert api.call_count == 1
    assert not Refund.objects.exists()


# --- Duplicates ---


@responses.activate
def test_same_delivery_three_times_is_stored_once_and_refunds_once(wc_store):
    api = mock_refund(5125)
    deliveries = [deliver(wc_store, PARTIAL_REFUND) for _ in range(3)]
    answers = [(delivery.response.json()["status"], len(delivery.enqueued)) for delivery in deliveries]

    assert [status for status, _ in answers] == ["received", "duplicate", "duplicate"]
    assert [enqueued > 0 for _, enqueued in answers] == [True, False, False]
    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1
    assert api.call_count == 1


@responses.activate
def test_two_orders_in_the_same_second_share_a_delivery_id_and_are_both_processed(wc_store):
    # wp_hash(webhook id . unix second): a bulk "cancel" sends both orders with one delivery id.
    BagFactory(merchant=wc_store.merchant, external_id="5121", sub_total=10000, shipping_total=1000, tax_total=800)
    deliver(wc_store, CANCELLED, event_id="same-second")
    response = deliver(wc_store, CANCELLED, changes={"id": 5121}, event_id="same-second").response

    assert response.json()["status"] == "received"
    assert InboundEvent.objects.count() == 2
    assert sorted(Refund.objects.values_list("external_id", flat=True)) == ["cancel:5120", "cancel:5121"]


# --- Bad input at the receiver ---


def test_missing_signature_is_401(wc_store):
    assert_rejected(post_webhook(wc_store, PARTIAL_REFUND, secret=None), 401, "invalid_signature")


def test_signature_with_another_secret_is_401(wc_store):
    assert_rejected(post_webhook(wc_store, PARTIAL_REFUND, secret="not-the-secret"), 401, "invalid_signature")


@pytest.mark.parametrize(
    "tamper",
    [lambda body: body.replace(b'"-48.20"', b'"-98.20"'), lambda body: body + b"\n"],
    ids=["value", "whitespace"],
)
def test_tampered_body_is_401(wc_store, tamper):
    body = fixture_text("woocommerce", f"{PARTIAL_REFUND}.json").encode()
    signed = {"X-WC-Webhook-Signature": woocommerce_signature(WEBHOOK_SECRET, body)}
    assert_rejected(post_webhook(wc_store, body=tamper(body), headers=signed), 401, "invalid_signature")


def test_connection_without_a_webhook_secret_accepts_nothing(wc_store):
    wc_store.connection.webhook_secret = ""
    wc_store.connection.save()
    assert_rejected(post_webhook(wc_store, PARTIAL_REFUND, secret=""), 401, "invalid_signature")


@pytest.mark.parametrize("body", [b'{"id": 5120,', b"[5120]", b"webhook_id=12&x=1"])
def test_signed_but_malformed_json_is_400(wc_store, body):
    assert_rejected(post_webhook(wc_store, body=body), 400, "malformed_payload")


@pytest.mark.parametrize("header", ["X-WC-Webhook-Delivery-ID", "X-WC-Webhook-Topic"])
def test_signed_but_without_delivery_id_or_topic_is_400(wc_store, header):
    missing = {header: None}
    if header == "X-WC-Webhook-Topic":
        missing |= {"X-WC-Webhook-Resource": None, "X-WC-Webhook-Event": None}
    assert_rejected(post_webhook(wc_store, PARTIAL_REFUND, headers=missing), 400, "malformed_payload")


def test_unknown_connection_is_404(wc_store):
    response = post_webhook(wc_store, PARTIAL_REFUND, url="/webhooks/woocommerce/6b1e9d55-0d4b-4c3c-9d55-2f1a3b4c5d6e/")
    assert_rejected(response, 404, "not_found")


@override_settings(PLATFORM_WEBHOOK_MAX_BODY_BYTES=1000)
def test_oversized_body_is_413(wc_store):
    assert_rejected(post_webhook(wc_store, PARTIAL_REFUND), 413, "payload_too_large")


def test_setup_ping_is_acknowledged_and_stored_nowhere(client, wc_store):
    response = client.post(
        wc_store.url(),
        data=b"webhook_id=12",
        content_type="application/x-www-form-urlencoded",
        headers={"User-Agent": "WooCommerce/9.6.2 Hookshot (WordPress/6.7.2)"},
    )
    assert (response.status_code, response.json()) == (200, {"status": "ping"})
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize("body", [b"webhook_id=12&order=1", b"webhook_id=", b'{"webhook_id": 12}'])
def test_anything_else_unsigned_is_still_401(client, wc_store, body):
    response = client.post(wc_store.url(), data=body, content_type="application/x-www-form-urlencoded")
    assert_rejected(response, 401, "invalid_signature")


def test_ping_to_an_unknown_connection_is_404(client, db):
    response = client.post(
        "/webhooks/woocommerce/6b1e9d55-0d4b-4c3c-9d55-2f1a3b4c5d6e/",
        data=b"webhook_id=12",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 404


# --- Adapter and client ---


def test_registered_for_webhooks():
    adapter = webhook_adapter_for_slug("woocommerce")
    assert isinstance(adapter, WooCommerceAdapter)
    assert adapter.platform == Platform.WOOCOMMERCE


def test_refund_detail_fixture_normalizes():
    refund = parse_refund_detail(parse_json(fixture_text("woocommerce", "refund_5131.json")), currency="USD")
    assert (refund.external_id, refund.amount) == ("5131", 6980)
    assert refund.parts == AmountParts(sub_total=6000, shipping=500, tax=480)
    assert refund.lines == (RefundLine("311", 1, 4000), RefundLine("312", 1, 2000))
    assert refund.created_at.isoformat() == "2026-03-04T15:02:44+00:00"


def test_order_fixture_normalizes():
    order = parse_json(fixture_text("woocommerce", "order_updated_partial_refund.json"))
    state = WooCommerceAdapter().state_from_order(order, fallback_currency="EUR")
    assert (state.order_id, state.status, state.cancelled, state.currency) == ("5120", "completed", False, "USD")
    assert state.totals == AmountParts(sub_total=10000, shipping=1000, tax=800)
    assert [(line.external_id, line.quantity, line.unit_price, line.sku) for line in state.lines] == [
        ("311", 2, 4000, "MUG-BLUE"),
        ("312", 1, 2000, "TOWEL-1"),
    ]
    assert [(r.external_id, r.amount, r.parts) for r in state.refunds] == [("5125", 4820, None)]
    assert state.placed_at.isoformat() == "2026-02-27T14:00:11+00:00"


@responses.activate
def test_client_reads_a_refund_with_basic_auth_and_types_its_errors():
    client = WooCommerceClient(store_url=f"{STORE_URL}/", consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET)
    responses.get(f"{REFUNDS_URL}/5125", json=fixture_json("woocommerce", "refund_5125.json"))
    responses.get(f"{STORE_URL}/wp-json/wc/v3/orders/5120", status=401, json={"code": "woocommerce_rest_cannot_view"})

    assert client.get_order_refund("5120", "5125")["amount"] == "48.20"
    request = responses.calls[0].request
    assert request.url == f"{REFUNDS_URL}/5125"
    assert request.headers["Authorization"].startswith("Basic ")
    with pytest.raises(PlatformAuthenticationFailed) as raised:
        client.get_order("5120")
    assert CONSUMER_SECRET not in raised.value.message


def test_client_needs_all_three_credentials(db):
    connection = StoreConnectionFactory(merchant__platform=Platform.WOOCOMMERCE, credentials={"store_url": STORE_URL})
    with pytest.raises(ConnectionMisconfigured, match="consumer_key, consumer_secret"):
        WooCommerceClient.from_connection(connection)


# --- Parallel duplicates (PostgreSQL) ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_same_delivery_three_times_in_parallel_is_stored_and_refunded_once(wc_store):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{REFUNDS_URL}/5125", json=fixture_json("woocommerce", "refund_5125.json"))

        def partial_refund():
            return deliver(wc_store, PARTIAL_REFUND).response.status_code

        assert run_in_parallel(partial_refund, partial_refund, partial_refund) == [200, 200, 200]

    assert InboundEvent.objects.count() == 1
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    assert list(Refund.objects.values_list("external_id", "amount")) == [("5125", 4820)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_three_deliveries_of_one_refund_in_parallel_refund_once(wc_store):
    # Three deliveries (own delivery ids) of the fully refunded order: each reads and records, once.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{REFUNDS_URL}/5125", json=fixture_json("woocommerce", "refund_5125.json"))
        mock.get(f"{REFUNDS_URL}/5131", json=fixture_json("woocommerce", "refund_5131.json"))
        fully_refunded = refunded((5131, "-69.80"), (5125, "-48.20"))

        def delivered(delivery_id):
            return lambda: (
                deliver(wc_store, PARTIAL_REFUND, changes=fully_refunded, event_id=delivery_id).response.status_code
            )

        assert run_in_parallel(delivered("a"), delivered("b"), delivered("c")) == [200, 200, 200]

    assert InboundEvent.objects.count() == 3
    assert sorted(Refund.objects.values_list("external_id", "amount")) == [("5125", 4820), ("5131", 6980)]
    wc_store.mug.refresh_from_db()
    wc_store.towel.refresh_from_db()
    assert (wc_store.mug.quantity_refunded, wc_store.towel.quantity_refunded) == (2, 1)

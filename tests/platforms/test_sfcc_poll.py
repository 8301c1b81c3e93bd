"""SFCC Option 1 polling (mocked Account Manager + Orders API) and Option 2 left alone."""

import datetime as dt
import json
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from platforms import services, tasks
from platforms.adapters.base import WebhookEnvelope
from platforms.adapters.sfcc import POLL_TOPIC
from platforms.clients.sfcc import SfccClient
from platforms.models import InboundEvent, Platform, SfccRefundMode, StoreConnection
from refunds.models import Refund, RefundSource
from tests.platforms.conftest import make_store
from tests.platforms.delivery import fixture_json

CREDENTIALS = {
    "short_code": "kv7kzm78",
    "organization_id": "f_ecom_zysr_001",
    "site_id": "RefArch",
    "client_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "client_secret": "sfccClientSecret0123",
}
ORDERS_URL = "https://kv7kzm78.api.commercecloud.salesforce.com/checkout/orders/v1/organizations/f_ecom_zysr_001/orders"
NOW = dt.datetime(2026, 3, 3, 14, 0, tzinfo=dt.UTC)


def _store(mode=SfccRefundMode.CANCEL_AS_REFUND, order_id="00001234", **kwargs):
    return make_store(
        Platform.SFCC,
        order_id=order_id,
        line_ids=("a1b2c3d4e5f6a1b2c3d4e5f6", "f6e5d4c3b2a1f6e5d4c3b2a1"),
        credentials=CREDENTIALS,
        sfcc_refund_mode=mode,
        **kwargs,
    )


def _mock_api(mock, search=None, search_status=200):
    token = mock.post(SfccClient.token_url, json=fixture_json("sfcc", "token.json"))
    if search_status == 200:
        orders = mock.get(ORDERS_URL, json=search or fixture_json("sfcc", "orders_search.json"))
    else:
        orders = mock.get(ORDERS_URL, status=search_status, json={"title": "Internal Server Error"})
    return token, orders


@pytest.fixture
def freeze_now(monkeypatch):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: NOW)


@responses.activate
def test_option_1_cancelled_order_becomes_a_full_refund_from_the_poll(db, django_capture_on_commit_callbacks):
    store = _store()
    _store_b = _store(order_id="00001235")  # another Violet order, not cancelled
    token, search = _mock_api(responses)
    with django_capture_on_commit_callbacks(execute=True):
        created = tasks.poll_platform_orders.delay().get()

    assert created == 1
    refund = Refund.objects.get()
    assert refund.bag == store.bag
    assert refund.external_id == "cancel:00001234"
    assert refund.source == RefundSource.PLATFORM_POLL
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        11800,
        10000,
        1000,
        800,
    )
    event = InboundEvent.objects.get()
    assert (event.platform, event.topic, event.status) == (Platform.SFCC, "poll/order_cancelled", "PROCESSED")
    assert refund.inbound_event == event
    # 00009999 is cancelled but not an order placed through the network: no event for it.
    assert not InboundEvent.objects.filter(body__contains="00009999").exists()
    assert token.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "sfcc.orders" in token.calls[0].request.body
    assert search.calls[0].request.headers["Authorization"].startswith("Bearer eyJ")


@responses.activate
def test_cursor_advances_after_success_and_the_next_poll_starts_there(
    db, freeze_now, django_capture_on_commit_callbacks
):
    store = _store()
    _token, search = _mock_api(responses)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()
    store.connection.refresh_from_db()
    # The first poll looks one day back, in windows of at most 6 hours, one after the other up to now.
    assert store.connection.last_polled_at == NOW
    windows = [parse_qs(urlparse(call.request.url).query) for call in search.calls]
    assert [(w["lastModifiedDateFrom"][0], w["lastModifiedDateTo"][0]) for w in windows] == [
        ("2026-03-02T14:00:00.000Z", "2026-03-02T20:00:00.000Z"),
        ("2026-03-02T20:00:00.000Z", "2026-03-03T02:00:00.000Z"),
        ("2026-03-03T02:00:00.000Z", "2026-03-03T08:00:00.000Z"),
        ("2026-03-03T08:00:00.000Z", "2026-03-03T14:00:00.000Z"),
    ]
    assert windows[0]["siteId"] == ["RefArch"]
    first_run_calls = len(search.calls)

    StoreConnection.objects.filter(pk=store.connection.pk).update(last_polled_at=NOW - dt.timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()
    query = parse_qs(urlparse(search.calls[first_run_calls].request.url).query)
    assert query["lastModifiedDateFrom"] == ["2026-03-03T13:50:00.000Z"]  # the cursor minus the overlap
    assert query["lastModifiedDateTo"] == ["2026-03-03T14:00:00.000Z"]  # up to now
    store.connection.refresh_from_db()
    assert store.connection.last_polled_at == NOW
    # The same cancellation seen again is a duplicate: still one event, one refund.
    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1


@responses.activate
def test_failed_poll_keeps_the_cursor_and_records_the_error(db, django_capture_on_commit_callbacks):
    cursor = dt.datetime(2026, 3, 3, 12, 0, tzinfo=dt.UTC)
    store = _store()
    StoreConnection.objects.filter(pk=store.connection.pk).update(last_polled_at=cursor)
    _token, search = _mock_api(responses, search_status=500)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()

    store.connection.refresh_from_db()
    assert store.connection.last_polled_at == cursor
    assert "SFCC answered 500" in store.connection.last_error
    assert search.call_count == 3  # the client's bounded retries
    assert not InboundEvent.objects.exists()


@responses.activate
def test_option_2_merchants_are_never_polled(db, django_capture_on_commit_callbacks):
    store = _store(mode=SfccRefundMode.MANUAL_NOTICE)
    with django_capture_on_commit_callbacks(execute=True):
        created = tasks.poll_platform_orders.delay().get()

    assert created == 0
    assert len(responses.calls) == 0  # any HTTP call would fail: none is registered
    store.connection.refresh_from_db()
    assert store.connection.last_polled_at is None
    assert not Refund.objects.exists()


@responses.activate
def test_option_2_merchant_never_gets_an_automatic_refund_even_from_a_stored_cancellation(
    db, django_capture_on_commit_callbacks
):
    store = _store(mode=SfccRefundMode.MANUAL_NOTICE)
    order = fixture_json("sfcc", "orders_search.json")["data"][0]
    with django_capture_on_commit_callbacks(execute=True):
        services.event_ingest(
            connection=store.connection,
            envelope=WebhookEnvelope(event_id="manual-check", topic=POLL_TOPIC, order_id="00001234"),
            body=json.dumps(order),
            headers={},
        )

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "Option 2" in event.outcome


@responses.activate
def test_long_outage_is_caught_up_in_bounded_windows(db, freeze_now, django_capture_on_commit_callbacks):
    store = _store()
    StoreConnection.objects.filter(pk=store.connection.pk).update(last_polled_at=NOW - dt.timedelta(days=2))
    _token, search = _mock_api(responses, search={"limit": 200, "offset": 0, "total": 0, "data": []})
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()

    store.connection.refresh_from_db()
    query = parse_qs(urlparse(search.calls[0].request.url).query)
    assert query["lastModifiedDateFrom"] == ["2026-03-01T13:55:00.000Z"]
    assert query["lastModifiedDateTo"] == ["2026-03-01T19:55:00.000Z"]
    # At most SFCC_POLL_MAX_WINDOWS_PER_RUN (8) windows of 6 h in one run; the next run reaches now.
    assert search.call_count == 8
    assert store.connection.last_polled_at == dt.datetime(2026, 3, 3, 13, 55, tzinfo=dt.UTC)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()
    store.connection.refresh_from_db()
    assert store.connection.last_polled_at == NOW


@responses.activate
def test_search_results_are_paged(db):
    client = SfccClient(**CREDENTIALS)
    responses.post(SfccClient.token_url, json=fixture_json("sfcc", "token.json"))
    page_1 = {"limit": 200, "offset": 0, "total": 201, "data": [{"orderNo": str(n)} for n in range(200)]}
    page_2 = {"limit": 200, "offset": 200, "total": 201, "data": [{"orderNo": "200"}]}
    responses.get(ORDERS_URL, json=page_1)
    responses.get(ORDERS_URL, json=page_2)

    orders = list(client.iter_orders_modified(modified_from=NOW - dt.timedelta(hours=1), modified_to=NOW))

    assert [o["orderNo"] for o in orders] == [str(n) for n in range(201)]
    offsets = [parse_qs(urlparse(c.request.url).query)["offset"] for c in responses.calls[1:]]
    assert offsets == [["0"], ["200"]]
    assert sum(1 for c in responses.calls if c.request.url == SfccClient.token_url) == 1  # token reused


def test_missing_credentials_fail_the_poll_of_that_store_only(db, django_capture_on_commit_callbacks):
    broken = _store()
    StoreConnection.objects.filter(pk=broken.connection.pk).update(credentials={"short_code": "x"})
    with responses.RequestsMock() as mock, django_capture_on_commit_callbacks(execute=True):
        healthy = _store(order_id="00001234-B")
        _mock_api(mock)
        tasks.poll_platform_orders.delay()

    broken.connection.refresh_from_db()
    healthy.connection.refresh_from_db()
    assert "lacks: organization_id, site_id, client_id, client_secret" in broken.connection.last_error
    assert broken.connection.last_polled_at is None
    assert healthy.connection.last_polled_at is not None

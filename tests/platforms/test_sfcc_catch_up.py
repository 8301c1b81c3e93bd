"""SFCC Option 1 catch-up: a poll reads window after window until it reaches now (at most
SFCC_POLL_MAX_WINDOWS_PER_RUN), so a newly connected store's cancellation is found by its first poll
and a store behind after an outage is caught up; the Orders API is recorded HTTP (`responses`) that
answers each window with only the orders modified inside it, as SFCC does."""

import datetime as dt
import json
from urllib.parse import parse_qs, urlparse

import pytest
import responses

from platforms import tasks
from platforms.clients.sfcc import SfccClient
from platforms.models import InboundEvent, StoreConnection
from refunds.models import Refund, RefundSource
from tests.platforms.delivery import fixture_json
from tests.platforms.test_sfcc_poll import NOW, ORDERS_URL, _store

# The cancellation in the captured search happened 49 minutes before NOW.
CANCELLED_AT = "2026-03-03T13:11:19.000Z"


@pytest.fixture
def freeze_now(monkeypatch):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: NOW)


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _windowed_search(fail_calls=()):
    """The Orders API: each call answers only the orders modified within its window; the calls whose
    number is in `fail_calls` (1-based) answer 503."""
    orders = fixture_json("sfcc", "orders_search.json")["data"]
    calls = []

    def answer(request):
        calls.append(request)
        if len(calls) in fail_calls:
            return 503, {}, '{"title": "Service Unavailable"}'
        query = parse_qs(urlparse(request.url).query)
        start, end = _parse(query["lastModifiedDateFrom"][0]), _parse(query["lastModifiedDateTo"][0])
        hits = [o for o in orders if start <= _parse(o["lastModified"]) <= end]
        return 200, {}, json.dumps({"limit": 200, "offset": 0, "total": len(hits), "data": hits})

    responses.post(SfccClient.token_url, json=fixture_json("sfcc", "token.json"))
    responses.add_callback(responses.GET, ORDERS_URL, callback=answer)
    return calls


def _window(request) -> tuple[str, str]:
    query = parse_qs(urlparse(request.url).query)
    return query["lastModifiedDateFrom"][0], query["lastModifiedDateTo"][0]


@responses.activate
def test_a_newly_connected_store_s_cancellation_is_found_by_the_first_poll(
    db, freeze_now, django_capture_on_commit_callbacks
):
    store = _store()  # never polled: no cursor
    calls = _windowed_search()

    with django_capture_on_commit_callbacks(execute=True):
        created = tasks.poll_platform_orders.delay().get()

    assert created == 1
    refund = Refund.objects.get()
    assert (refund.bag, refund.external_id, refund.source) == (store.bag, "cancel:00001234", RefundSource.PLATFORM_POLL)
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    # The whole first lookback (24 h) in 6-hour windows, the last one ending now: the cursor is at now.
    assert _window(calls[0]) == ("2026-03-02T14:00:00.000Z", "2026-03-02T20:00:00.000Z")
    assert _window(calls[-1])[1] == "2026-03-03T14:00:00.000Z"
    store.connection.refresh_from_db()
    assert store.connection.last_polled_at == NOW


@responses.activate
def test_after_an_outage_one_poll_catches_up_to_now(db, freeze_now, settings, django_capture_on_commit_callbacks):
    settings.SFCC_POLL_MAX_WINDOWS_PER_RUN = 8
    store = _store()
    StoreConnection.objects.filter(pk=store.connection.pk).update(last_polled_at=NOW - dt.timedelta(hours=30))
    calls = _windowed_search()

    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()

    assert len(calls) == 6  # 30 h 05 min in windows of at most 6 h
    assert Refund.objects.get().external_id == "cancel:00001234"
    store.connection.refresh_from_db()
    assert store.connection.last_polled_at == NOW


@responses.activate
def test_a_failure_mid_catch_up_keeps_the_windows_already_read(
    db, freeze_now, settings, django_capture_on_commit_callbacks
):
    store = _store()
    # The 3rd window fails (after the client's 3 attempts: calls 3, 4, 5).
    calls = _windowed_search(fail_calls=(3, 4, 5))

    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()

    store.connection.refresh_from_db()
    assert store.connection.last_polled_at == dt.datetime(2026, 3, 3, 2, 0, tzinfo=dt.UTC)  # two windows read
    assert "503" in store.connection.last_error
    assert not Refund.objects.exists()

    # The next poll goes on from there (minus the overlap) and reaches now: the cancellation is found.
    with django_capture_on_commit_callbacks(execute=True):
        tasks.poll_platform_orders.delay()
    assert _window(calls[5])[0] == "2026-03-03T01:55:00.000Z"
    store.connection.refresh_from_db()
    assert (store.connection.last_polled_at, store.connection.last_error) == (NOW, "")
    assert Refund.objects.get().external_id == "cancel:00001234"

"""The receiver's one-statement insert (issue #20 item 2: `INSERT ... ON CONFLICT DO NOTHING RETURNING`
through violet_refunds.db.row_insert_unless_conflict): the stored row is the one `create()` stored,
a repeated delivery writes nothing and enqueues nothing, and it never breaks a surrounding transaction.
"""

import datetime as dt
import hashlib

from django.db import transaction
from django.utils import timezone

from platforms import services, tasks
from platforms.adapters.base import WebhookEnvelope
from platforms.models import InboundEvent, Platform
from tests.platforms.delivery import post_webhook
from tests.reliability.workers import LiveBroker
from violet_refunds import publishing
from violet_refunds.db import row_insert_unless_conflict

BODY = '{"id": 1, "order_id": 450789469, "order_status_url": "https://shop/orders/abc/authenticate?key=k1"}'
HEADERS = {"Content-Type": "application/json", "X-Shopify-Topic": "refunds/create"}


def _ingest(store, event_id="wh-insert-1"):
    return services.event_ingest(
        connection=store.connection,
        envelope=WebhookEnvelope(event_id=event_id, topic="refunds/create"),
        body=BODY,
        headers=HEADERS,
        remote_ip="203.0.113.9",
    )


def test_the_row_is_stored_with_every_default_and_the_least_data(shopify_store, django_capture_on_commit_callbacks):
    before = timezone.now()
    with django_capture_on_commit_callbacks() as enqueued:
        result = _ingest(shopify_store)

    assert result.created and result.event.pk is not None and len(enqueued) == 1
    row = InboundEvent.objects.get(pk=result.event.pk)
    assert (row.platform, row.connection_id, row.event_id, row.topic) == (
        Platform.SHOPIFY,
        shopify_store.connection.pk,
        "wh-insert-1",
        "refunds/create",
    )
    assert row.headers == HEADERS and row.remote_ip == "203.0.113.9"
    assert row.body == BODY.replace("https://shop/orders/abc/authenticate?key=k1", "[redacted]")
    assert row.body_sha256 == hashlib.sha256(BODY.encode()).hexdigest()
    assert (row.status, row.attempts, row.claims_without_outcome, row.retries) == (
        InboundEvent.Status.RECEIVED,
        0,
        0,
        0,
    )
    assert (row.outcome, row.error, row.traceback, row.order_id) == ("", "", "", "")
    assert row.processed_at is row.next_attempt_at is row.requeued_at is row.redacted_at is None
    assert before <= row.date_created <= row.date_last_modified <= timezone.now() + dt.timedelta(seconds=1)


def test_a_repeated_delivery_in_a_transaction_writes_nothing_and_leaves_it_usable(
    shopify_store, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued, transaction.atomic():
        first = _ingest(shopify_store)
        again = _ingest(shopify_store)
        # The duplicate raised nothing inside the transaction: it still answers queries.
        assert InboundEvent.objects.filter(event_id="wh-insert-1").count() == 1

    assert (first.created, again.created) == (True, False)
    assert again.event.pk == first.event.pk
    assert len(enqueued) == 1  # one processing message for the one stored event
    assert InboundEvent.objects.count() == 1


def test_the_same_event_id_on_another_platform_is_another_event(shopify_store, ecwid_store):
    shopify = _ingest(shopify_store, event_id="same-id")
    ecwid = _ingest(ecwid_store, event_id="same-id")

    assert shopify.created and ecwid.created and shopify.event.pk != ecwid.event.pk
    assert sorted(InboundEvent.objects.values_list("platform", flat=True)) == [Platform.ECWID, Platform.SHOPIFY]


def test_the_helper_says_whether_it_inserted_and_sets_the_primary_key(shopify_store):
    row = InboundEvent(platform=Platform.SHOPIFY, connection=shopify_store.connection, event_id="direct-1")
    assert row_insert_unless_conflict(row, conflict_fields=("platform", "event_id")) is True
    assert row.pk is not None and not row._state.adding and row._state.db == "default"
    duplicate = InboundEvent(platform=Platform.SHOPIFY, connection=shopify_store.connection, event_id="direct-1")
    assert row_insert_unless_conflict(duplicate, conflict_fields=("platform", "event_id")) is False
    assert duplicate.pk is None
    assert list(InboundEvent.objects.values_list("pk", flat=True)) == [row.pk]


def test_each_new_event_is_enqueued_once(shopify_store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as enqueued:
        results = [_ingest(shopify_store, event_id=f"wh-many-{n}") for n in range(3)]
        results += [_ingest(shopify_store, event_id=f"wh-many-{n}") for n in range(3)]

    assert [r.created for r in results] == [True] * 3 + [False] * 3
    assert len(enqueued) == 3


def test_a_publish_that_fails_still_answers_2xx_and_leaves_the_event_to_the_requeue_job(
    shopify_store, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    """Acknowledged means processed: the row is committed before the publish; a broker that refuses
    the LPUSH costs the message, not the event, which beat's requeue job finds still RECEIVED."""
    fell_back = []
    real_task = tasks.process_inbound_event._get_current_object()
    monkeypatch.setattr(real_task, "apply_async", lambda *args, **kwargs: fell_back.append(args))
    publishing.publishing_reset()
    try:
        with LiveBroker("redis://127.0.0.1:1/0"), django_capture_on_commit_callbacks(execute=True):
            response = post_webhook(shopify_store, "refunds_create", event_id="wh-broker-down")
    finally:
        publishing.publishing_reset()

    assert (response.status_code, response.json()["status"]) == (200, "received")
    assert fell_back == []  # the one-LPUSH path was taken, and failed
    assert "Could not enqueue inbound event" in caplog.text
    event = InboundEvent.objects.get(event_id="wh-broker-down")
    assert (event.status, event.attempts) == (InboundEvent.Status.RECEIVED, 0)
    requeued = []
    monkeypatch.setattr(services, "_enqueue_processing", requeued.append)
    later = event.date_created + services.event_requeue_after() + dt.timedelta(seconds=1)
    assert services.events_requeue(now=later) == [event.pk]
    assert requeued == [event.pk]

"""The outbox: events are written with the change that causes them, exactly once per change, whatever
is reprocessed, duplicated or replayed; a rolled-back change leaves no event."""

import pytest
from django.db import transaction

from notifications import services
from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEvent
from platforms.models import InboundEvent
from platforms.services import events_replay
from refunds import announcements
from refunds.models import BagStatus, Refund, RefundStatus
from refunds.services import (
    bag_mark_canceled,
    bag_update_refund_state,
    refund_cancel,
    refund_mark_external,
    refund_process,
    refund_retry,
)
from refunds.tasks import process_refund
from tests.factories import BagFactory, OrderSkuFactory
from tests.notifications.conftest import record_refund, register
from tests.platforms.conftest import fixture_text, shopify_post

pytestmark = pytest.mark.django_db


def event_types(**filters) -> list[str]:
    return list(
        WebhookEvent.objects.filter(**filters).order_by("bag_id", "sequence").values_list("event_type", flat=True)
    )


def test_reprocessing_a_completed_refund_emits_nothing_more(hooked, run_commits):
    with run_commits():
        refund = record_refund(hooked.bag, external_id="re-1")
    before = list(WebhookEvent.objects.values_list("event_id", flat=True))
    assert len(before) == 4

    with run_commits():
        refund_process(refund_id=refund.pk)
        process_refund.delay(refund.pk)
        announcements.refund_event_emit(Refund.objects.get(pk=refund.pk))
        bag_update_refund_state(bag_id=hooked.bag.pk)

    assert list(WebhookEvent.objects.values_list("event_id", flat=True)) == before
    assert len(hooked.receiver.requests) == 4
    assert len({r.header("X-Violet-Event-Id") for r in hooked.receiver.requests}) == 4


def test_recording_the_same_refund_twice_is_one_event(hooked, run_commits):
    with run_commits():
        first = record_refund(hooked.bag, external_id="re-1", amount=1000, enqueue=False)
        again = record_refund(hooked.bag, external_id="re-1", amount=1000, enqueue=False)
        keyed = record_refund(hooked.bag, request_key="key-1", amount=500, enqueue=False)
        keyed_again = record_refund(hooked.bag, request_key="key-1", amount=500, enqueue=False)

    assert (first.pk, keyed.pk) == (again.pk, keyed_again.pk)
    assert event_types() == [EventType.REFUND_PROCESSING, EventType.REFUND_PROCESSING]
    assert sorted(WebhookEvent.objects.values_list("refund_id", flat=True)) == sorted([first.pk, keyed.pk])
    assert len(hooked.receiver.requests) == 2


def test_a_duplicated_and_replayed_platform_cancellation_is_one_event_per_change(
    client,
    shopify_store,
    receiver,
    run_commits,
):
    endpoint, _ = register(shopify_store.bag.order.app, receiver.url)
    body = fixture_text("shopify", "orders_cancelled_with_refund.json").encode()
    with run_commits():
        shopify_post(client, shopify_store, body, topic="orders/cancelled", webhook_id="wh-1")
    with run_commits():
        shopify_post(client, shopify_store, body, topic="orders/cancelled", webhook_id="wh-1")  # duplicate delivery
        shopify_post(client, shopify_store, body, topic="orders/cancelled", webhook_id="wh-2")  # same change, new id
    with run_commits():
        events_replay(InboundEvent.objects.all())  # an operator replays both

    shopify_store.bag.refresh_from_db()
    assert shopify_store.bag.status == BagStatus.CANCELED
    assert Refund.objects.count() == 1
    # The order has no payment in this world, so processing ends FAILED: also reported once.
    assert event_types() == [
        EventType.ORDER_CANCELLED,
        EventType.ORDER_UPDATED,
        EventType.REFUND_PROCESSING,
        EventType.REFUND_FAILED,
    ]
    assert receiver.topics() == event_types()
    assert len({r.header("X-Violet-Event-Id") for r in receiver.requests}) == 4
    assert WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.SUCCEEDED).count() == 4


def test_a_rolled_back_change_leaves_no_event_and_sends_nothing(hooked, run_commits):
    with run_commits(), pytest.raises(RuntimeError), transaction.atomic():
        record_refund(hooked.bag, external_id="re-1")
        bag_mark_canceled(bag=hooked.bag, actor="test")
        raise RuntimeError("the change fails after the events were written")

    assert not WebhookEvent.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert hooked.receiver.requests == []


def test_a_retried_refund_reports_its_new_round(db, channel, receiver, run_commits):
    register(channel.app, receiver.url)
    bag = BagFactory(order__app=channel.app)  # no payment: processing fails (MISSING_PAYMENT)
    OrderSkuFactory(bag=bag, price=5000, quantity=2)
    with run_commits():
        refund = record_refund(bag, external_id="re-1", amount=1000)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED

    with run_commits():
        refund_retry(refund=refund)
    with run_commits():
        refund_process(refund_id=refund.pk)  # a stale duplicate after the round ended

    assert event_types() == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_FAILED,
        EventType.REFUND_PROCESSING,
        EventType.REFUND_FAILED,
    ]
    assert sorted(WebhookEvent.objects.values_list("dedupe_key", flat=True)) == sorted(
        [f"refund:{refund.pk}:{status}:{round_}" for status in ("PROCESSING", "FAILED") for round_ in (0, 1)]
    )
    assert len(receiver.requests) == 4


def test_marking_external_reports_the_refund_and_the_refunded_bag(db, channel, receiver, run_commits):
    register(channel.app, receiver.url)
    bag = BagFactory(order__app=channel.app)
    OrderSkuFactory(bag=bag, price=5000, quantity=2)
    with run_commits():
        refund = record_refund(bag, external_id="re-1")
    with run_commits():
        refund_mark_external(refund=Refund.objects.get(pk=refund.pk), note="Refunded by bank transfer.")

    assert event_types() == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_FAILED,
        EventType.REFUND_EXTERNAL,
        EventType.ORDER_REFUNDED,
        EventType.ORDER_UPDATED,
    ]
    assert receiver.topics() == event_types()


def test_canceling_a_refund_reports_it(hooked, run_commits):
    with run_commits():
        refund = record_refund(hooked.bag, external_id="re-1", enqueue=False)
        refund_cancel(refund=refund, note="Recorded by mistake.")

    assert event_types() == [EventType.REFUND_PROCESSING, EventType.REFUND_CANCELED]
    assert hooked.receiver.topics() == event_types()


def test_each_partial_refund_is_its_own_order_refunded_event(hooked, run_commits):
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", amount=3000)
    with run_commits():
        record_refund(hooked.bag, external_id="re-2")  # the rest

    order_events = WebhookEvent.objects.filter(event_type=EventType.ORDER_REFUNDED).order_by("sequence")
    assert [key.rsplit(":", 1)[1] for key in order_events.values_list("dedupe_key", flat=True)] == ["3000", "11300"]
    import json

    bodies = [json.loads(event.body) for event in order_events]
    assert [body["bags"][0]["status"] for body in bodies] == ["PARTIALLY_REFUNDED", "REFUNDED"]
    assert WebhookEvent.objects.count() == 8
    assert list(WebhookEvent.objects.order_by("sequence").values_list("sequence", flat=True)) == list(range(1, 9))


def test_events_exist_without_any_endpoint(db, channel, run_commits):
    from tests.world import funded_bag

    bag = funded_bag(app=channel.app)
    with run_commits():
        record_refund(bag, external_id="re-1")

    assert event_types() == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_COMPLETED,
        EventType.ORDER_REFUNDED,
        EventType.ORDER_UPDATED,
    ]
    assert not WebhookDelivery.objects.exists()
    assert set(WebhookEvent.objects.values_list("app_id", flat=True)) == {channel.app.pk}


def test_a_disabled_endpoint_gets_no_deliveries_a_paused_one_waits(hooked, run_commits, receiver):
    from notifications.models import WebhookEndpoint

    paused, _ = register(hooked.app, receiver.url + "?paused")
    disabled, _ = register(hooked.app, receiver.url + "?disabled")
    WebhookEndpoint.objects.filter(pk=paused.pk).update(status=WebhookEndpoint.Status.PAUSED)
    services.webhook_endpoint_disable(endpoint=disabled, actor="test", reason="test")
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)

    assert dict(WebhookDelivery.objects.values_list("endpoint_id", "status")) == {
        hooked.endpoint.pk: DeliveryStatus.SUCCEEDED,
        paused.pk: DeliveryStatus.CREATED,
    }
    assert len(receiver.requests) == 1

"""On the real services: concurrent emitters on PostgreSQL (one connection per thread), and delivery
by a real Celery worker over Redis to the local receiver (publish after commit, retries through the
relay, per-bag order kept across processes)."""

import threading

import pytest

from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEvent
from notifications.tasks import relay_webhook_deliveries
from refunds import announcements
from refunds.models import BagStatus, Refund, RefundStatus
from refunds.services import bag_mark_canceled
from tests.factories import BagFactory, OrderFactory, RefundFactory
from tests.notifications.conftest import make_due, record_refund, register
from tests.notifications.test_delivery import channel_verifies
from tests.parallel import run_in_parallel
from tests.reliability.workers import wait_for
from tests.world import funded_bag


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_emitters_write_one_event_per_change_numbered_without_gaps():
    bag = BagFactory(order=OrderFactory())
    # Written directly, so no event exists yet: the emitters below race to write them.
    refunds = [RefundFactory(bag=bag, amount=100, sub_total_amount=100) for _ in range(6)]
    same = refunds[0]
    turn = iter(refunds[1:])
    lock = threading.Lock()

    def emit_the_next_refund():
        with lock:
            refund = next(turn)
        return announcements.refund_event_emit(Refund.objects.get(pk=refund.pk))

    def emit_the_same_refund():
        return announcements.refund_event_emit(Refund.objects.get(pk=same.pk))

    run_in_parallel(*[emit_the_same_refund] * 6)  # one change, 6 emitters
    run_in_parallel(*[emit_the_next_refund] * 5)  # 5 other changes of the same bag at once
    run_in_parallel(*[lambda: bag_mark_canceled(bag=bag, actor="test")] * 6)

    events = list(WebhookEvent.objects.filter(bag=bag).order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, 9))
    assert sorted(e.refund_id for e in events if e.event_type == EventType.REFUND_PROCESSING) == sorted(
        r.pk for r in refunds
    )
    assert [e.event_type for e in events[-2:]] == [EventType.ORDER_CANCELLED, EventType.ORDER_UPDATED]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_emitters_of_order_events_write_each_event_and_its_deliveries_once():
    bag = BagFactory(order=OrderFactory(), status=BagStatus.PARTIALLY_REFUNDED)
    endpoints = [register(bag.order.app, f"http://127.0.0.1:9/hook-{n}")[0] for n in range(2)]
    amounts = iter([1000, 2000, 3000, 4000])
    lock = threading.Lock()

    def emit_another_total():
        with lock:
            amount = next(amounts)
        return announcements.bag_refund_events_emit(bag, refunded_amount=amount)

    # One change (two events), 6 emitters at once; then 4 other changes of the same bag at once.
    run_in_parallel(*[lambda: announcements.bag_refund_events_emit(bag, refunded_amount=500)] * 6)
    run_in_parallel(*[emit_another_total] * 4)

    events = list(WebhookEvent.objects.filter(bag=bag).order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, 11))
    assert len({e.dedupe_key for e in events}) == 10
    assert sorted(int(e.dedupe_key.rsplit(":", 1)[1]) for e in events) == sorted(
        [a for a in (500, 1000, 2000, 3000, 4000) for _ in range(2)]
    )
    for refunded, updated in zip(events[::2], events[1::2], strict=True):  # each change's pair stays together
        assert (refunded.event_type, updated.event_type) == (EventType.ORDER_REFUNDED, EventType.ORDER_UPDATED)
        assert refunded.dedupe_key.rsplit(":", 1)[1] == updated.dedupe_key.rsplit(":", 1)[1]
    deliveries = WebhookDelivery.objects.filter(event__bag=bag)
    assert deliveries.count() == len(events) * len(endpoints)
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.CREATED}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_real_worker_delivers_in_order_and_retries_through_the_relay(start_worker, receiver, settings):
    settings.DEBUG = True
    bag = funded_bag()
    endpoint, secret = register(bag.order.app, receiver.url)
    worker = start_worker()
    receiver.fail(1)  # the first event's first attempt fails: the rest of the bag must wait for it

    refund = record_refund(bag, external_id="re-live")  # commits: delivery and processing go to Redis

    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == RefundStatus.COMPLETED, 60, worker)
    wait_for(lambda: WebhookEvent.objects.filter(bag=bag).count() == 4, 30, worker)
    first = WebhookDelivery.objects.get(event__sequence=1)
    wait_for(lambda: WebhookDelivery.objects.get(pk=first.pk).attempts == 1, 30, worker)
    assert len(receiver.requests) == 1  # the bag's later events are held back behind the retry
    held = WebhookDelivery.objects.filter(event__sequence__gt=1)
    assert set(held.values_list("status", "attempts")) == {(DeliveryStatus.CREATED, 0)}

    make_due()  # the retry's time has come; beat's relay runs (published to the worker)
    relay_webhook_deliveries.delay()

    wait_for(lambda: len(receiver.requests) == 5, 30, worker)
    wait_for(lambda: set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}, 30)
    assert receiver.topics() == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_PROCESSING,
        EventType.REFUND_COMPLETED,
        EventType.ORDER_REFUNDED,
        EventType.ORDER_UPDATED,
    ]
    assert all(channel_verifies(r.body, r.header("X-Violet-Hmac"), secret) for r in receiver.requests)
    assert {r.header("X-Violet-Webhook-Id") for r in receiver.requests} == {str(endpoint.pk)}

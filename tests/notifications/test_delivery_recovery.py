"""Settling of outbound deliveries (issue 13): an attempt interrupted by a worker kill is made due
again after WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS (not minutes), and the bag's later events wait no
longer than that; a database error on our side while recording an attempt loses nothing."""

import datetime as dt

import pytest
from django.db import OperationalError
from django.utils import timezone

from notifications.models import DeliveryStatus, EventType, WebhookDelivery
from notifications.services import delivery as delivery_module
from refunds.services import bag_mark_canceled
from tests.notifications.conftest import record_refund

pytestmark = pytest.mark.django_db

TERMINATED = "terminating connection due to administrator command"


@pytest.fixture
def three_waiting(hooked):
    """Three events of one bag, their deliveries waiting (nothing sent yet): REFUND_PROCESSING,
    ORDER_CANCELLED, ORDER_UPDATED."""
    record_refund(hooked.bag, external_id="re-1", enqueue=False)
    bag_mark_canceled(bag=hooked.bag, actor="test")
    deliveries = list(WebhookDelivery.objects.order_by("event__sequence"))
    assert [d.event.event_type for d in deliveries] == [
        EventType.REFUND_PROCESSING,
        EventType.ORDER_CANCELLED,
        EventType.ORDER_UPDATED,
    ]
    return deliveries


def claimed_by_a_dead_worker(delivery, *, seconds_ago: float) -> None:
    """The first copy claimed the delivery and was killed mid-POST: nothing recorded."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.IN_PROGRESS, claimed_at=timezone.now() - dt.timedelta(seconds=seconds_ago), attempts=1
    )


def test_an_interrupted_delivery_is_recovered_after_the_stuck_setting_and_its_bag_flows_again(
    hooked, three_waiting, relay, settings
):
    settings.WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS = 30
    first, *_ = three_waiting

    claimed_by_a_dead_worker(first, seconds_ago=25)
    result = relay()
    # Not yet: the attempt could still be running; the bag's later events wait behind it.
    assert (result.recovered, result.published, hooked.receiver.requests) == (0, 0, [])

    claimed_by_a_dead_worker(first, seconds_ago=31)
    result = relay()

    assert result.recovered == 1
    assert hooked.receiver.topics() == [EventType.REFUND_PROCESSING, EventType.ORDER_CANCELLED, EventType.ORDER_UPDATED]
    assert dict(WebhookDelivery.objects.values_list("pk", "status")) == {
        d.pk: DeliveryStatus.SUCCEEDED for d in three_waiting
    }
    first.refresh_from_db()
    assert first.attempts == 2  # the interrupted attempt counts


def test_the_default_stuck_wait_is_a_minute_not_five(settings):
    assert settings.WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS == 60
    assert delivery_module.delivery_stuck_after() == dt.timedelta(seconds=60)
    settings.WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS = 45
    assert delivery_module.delivery_stuck_after() == dt.timedelta(seconds=45)


class RecordFailing:
    """Wraps _delivery_attempt_record: the first `times` calls raise a database error (after the POST)."""

    def __init__(self, times: int):
        self.times = times
        self.calls = 0
        self.real = delivery_module._delivery_attempt_record

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.times:
            raise OperationalError(TERMINATED)
        return self.real(*args, **kwargs)


@pytest.fixture
def record_failing(monkeypatch):
    monkeypatch.setattr(delivery_module, "RECORD_RETRY_WAITS_SECONDS", (0, 0, 0))

    def install(times: int) -> RecordFailing:
        wrapper = RecordFailing(times)
        monkeypatch.setattr(delivery_module, "_delivery_attempt_record", wrapper)
        return wrapper

    return install


def test_a_database_error_while_recording_is_retried_and_the_outcome_kept(hooked, three_waiting, record_failing):
    first, *_ = three_waiting
    recording = record_failing(times=2)

    outcome = delivery_module.delivery_attempt(delivery_id=first.pk)

    assert outcome.status == DeliveryStatus.SUCCEEDED
    assert recording.calls == 3
    first.refresh_from_db()
    assert (first.status, first.attempts, first.claimed_at) == (DeliveryStatus.SUCCEEDED, 1, None)
    assert len(hooked.receiver.requests) == 1  # sent once, recorded once


def test_when_recording_keeps_failing_the_delivery_is_not_lost(hooked, three_waiting, record_failing, relay, settings):
    first, *_ = three_waiting
    record_failing(times=4)  # every try of this attempt

    with pytest.raises(OperationalError):
        delivery_module.delivery_attempt(delivery_id=first.pk)

    first.refresh_from_db()
    assert first.status == DeliveryStatus.IN_PROGRESS  # the relay's business now
    # The stuck wait later (time travel), the relay makes it due and sends it again with the same
    # event id (channels dedupe on X-Violet-Event-Id); the bag's later events follow.
    WebhookDelivery.objects.filter(pk=first.pk).update(
        claimed_at=timezone.now() - dt.timedelta(seconds=settings.WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS + 1)
    )
    assert relay().recovered == 1

    first.refresh_from_db()
    assert (first.status, first.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    event_ids = [r.header("X-Violet-Event-Id") for r in hooked.receiver.requests]
    assert event_ids[0] == event_ids[1] == str(first.event.event_id)
    assert hooked.receiver.topics()[1:] == [
        EventType.REFUND_PROCESSING,
        EventType.ORDER_CANCELLED,
        EventType.ORDER_UPDATED,
    ]

"""An endpoint that keeps failing: > 50 failed attempts in 30 minutes pause it for 1 h, then 3 h, then
24 h; tripping once more disables it (spec section 5). Pauses end by themselves; operators and the
channel can resume or disable."""

import datetime as dt

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint
from notifications.services import delivery
from refunds.services import bag_mark_canceled
from tests.factories import BagFactory, OrderFactory
from tests.notifications.conftest import make_due, register

pytestmark = pytest.mark.django_db


def cancel_bags(app, count: int, run_commits) -> None:
    """`count` bags of the app become CANCELED: one ORDER_CANCELLED event each, on its own bag (so
    per-bag ordering holds nothing back)."""
    with run_commits():
        for _ in range(count):
            bag_mark_canceled(bag=BagFactory(order=OrderFactory(app=app)), actor="test")


def end_pause(endpoint) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(paused_until=timezone.now() - dt.timedelta(seconds=1))


@pytest.fixture
def failing(db, channel, receiver):
    receiver.always_status = 500
    endpoint, _ = register(channel.app, receiver.url, event_types=[EventType.ORDER_CANCELLED])
    return endpoint


def test_more_than_fifty_failures_in_thirty_minutes_pause_for_an_hour(failing, channel, receiver, run_commits):
    thresholds = (services.FAILURES_BEFORE_PAUSE, services.FAILURE_WINDOW)
    assert thresholds == (50, dt.timedelta(minutes=30))
    cancel_bags(channel.app, 50, run_commits)
    failing.refresh_from_db()
    assert (failing.status, failing.failures_in_window) == (WebhookEndpoint.Status.ACTIVE, 50)

    cancel_bags(channel.app, 5, run_commits)  # the 51st failure trips it; the other 4 wait

    failing.refresh_from_db()
    assert failing.status == WebhookEndpoint.Status.PAUSED
    assert failing.pause_rounds == 1
    pause = failing.paused_until - failing.last_failure_at
    assert pause == dt.timedelta(hours=1)
    assert len(receiver.requests) == 51
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.CREATED, attempts=0).count() == 4


def test_failures_spread_over_more_than_the_window_do_not_pause(failing, channel, run_commits):
    cancel_bags(channel.app, 40, run_commits)
    WebhookEndpoint.objects.filter(pk=failing.pk).update(
        failure_window_started_at=timezone.now() - dt.timedelta(minutes=31)
    )
    cancel_bags(channel.app, 40, run_commits)

    failing.refresh_from_db()
    assert (failing.status, failing.failures_in_window) == (WebhookEndpoint.Status.ACTIVE, 40)


def test_a_pause_ends_by_itself_and_waiting_deliveries_go_out(
    failing, channel, receiver, relay, run_commits, monkeypatch
):
    monkeypatch.setattr(delivery, "FAILURES_BEFORE_PAUSE", 2)
    cancel_bags(channel.app, 5, run_commits)
    failing.refresh_from_db()
    assert (failing.status, len(receiver.requests)) == (WebhookEndpoint.Status.PAUSED, 3)

    receiver.always_status = 200
    make_due()
    assert relay().published == 0  # still paused
    end_pause(failing)
    result = relay()

    failing.refresh_from_db()
    assert (result.resumed, failing.status, failing.paused_until) == (1, WebhookEndpoint.Status.ACTIVE, None)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}
    assert len(receiver.requests) == 3 + 5
    assert failing.pause_rounds == 0  # a success ends the failing streak


def test_three_pauses_of_one_three_and_twenty_four_hours_then_disabled(
    failing, channel, receiver, relay, run_commits, monkeypatch
):
    monkeypatch.setattr(delivery, "FAILURES_BEFORE_PAUSE", 2)
    cancel_bags(channel.app, 3, run_commits)  # three failures: the first trip
    failing.refresh_from_db()
    pauses = [failing.paused_until - failing.last_failure_at]
    for _trip in range(2):
        end_pause(failing)
        make_due()
        relay()  # resumes; the three retries due now fail again and trip it again
        failing.refresh_from_db()
        assert failing.status == WebhookEndpoint.Status.PAUSED
        pauses.append(failing.paused_until - failing.last_failure_at)
    assert pauses == [dt.timedelta(hours=1), dt.timedelta(hours=3), dt.timedelta(hours=24)]
    assert failing.pause_rounds == 3

    end_pause(failing)
    make_due()
    relay()  # the fourth trip

    failing.refresh_from_db()
    assert failing.status == WebhookEndpoint.Status.DISABLED
    assert "after 3 pauses" in failing.disabled_reason
    assert len(receiver.requests) == 12
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.CANCELLED, 4)}
    cancel_bags(channel.app, 2, run_commits)  # a disabled endpoint gets no deliveries at all
    make_due()
    relay()
    assert len(receiver.requests) == 12
    assert WebhookDelivery.objects.count() == 3


def test_resuming_a_disabled_endpoint_clears_its_record(failing, channel, receiver, run_commits):
    services.webhook_endpoint_disable(endpoint=failing, actor="test", reason="testing")
    WebhookEndpoint.objects.filter(pk=failing.pk).update(pause_rounds=3, failures_in_window=7)
    receiver.always_status = 200

    services.webhook_endpoint_resume(endpoint=failing, actor="test")
    cancel_bags(channel.app, 1, run_commits)

    failing.refresh_from_db()
    assert (failing.status, failing.pause_rounds, failing.failures_in_window, failing.disabled_reason) == (
        WebhookEndpoint.Status.ACTIVE,
        0,
        0,
        "",
    )
    assert WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED

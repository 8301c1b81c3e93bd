"""Delivery to a real HTTP receiver: signature, headers and bodies, retries after 500s and timeouts,
exhaustion after 10 attempts over ~24 h, and per-bag ordering."""

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEvent
from notifications.services import delivery as delivery_module
from notifications.signing import signature_matches
from refunds.models import BagStatus, RefundStatus
from refunds.services import bag_mark_canceled
from tests.factories import BagFactory, OrderFactory
from tests.notifications.conftest import make_due, record_refund, register

pytestmark = pytest.mark.django_db


def channel_verifies(body: bytes, signature: str, secret: str) -> bool:
    """What a channel does with nothing but its signing secret (the README's snippet)."""
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature)


def test_full_refund_sends_refund_and_order_events_signed_in_order(hooked, run_commits):
    with run_commits():
        refund = record_refund(hooked.bag, external_id="re-1")
    refund.refresh_from_db()

    assert refund.status == RefundStatus.COMPLETED
    received = hooked.receiver.requests
    assert [r.header("X-Violet-Topic") for r in received] == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_COMPLETED,
        EventType.ORDER_REFUNDED,
        EventType.ORDER_UPDATED,
    ]
    events = list(WebhookEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    for request, event in zip(received, events, strict=True):
        assert channel_verifies(request.body, request.header("X-Violet-Hmac"), hooked.secret)
        assert request.header("X-Violet-Event-Id") == str(event.event_id)
        assert request.header("X-Violet-Webhook-Id") == str(hooked.endpoint.pk)
        assert request.header("X-Violet-Order-Id") == str(hooked.bag.order_id)
        assert request.header("X-Violet-Bag-Id") == str(hooked.bag.pk)
        assert request.header("X-Violet-Entity-Length") == str(len(request.body))
        assert request.header("Content-Type") == "application/json"
        assert request.body == event.body.encode()
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.SUCCEEDED, 1)}

    processing, completed, refunded, updated = (json.loads(r.body) for r in received)
    # Refund events carry the Order Refund object as the refunds API shows it, at that moment.
    assert (processing["id"], processing["status"], processing["amount"]) == (refund.pk, "PROCESSING", 11300)
    assert (completed["id"], completed["status"], completed["bag_id"]) == (refund.pk, "COMPLETED", hooked.bag.pk)
    assert len(completed["transfer_reversals"]) == 2
    # Order events carry the full Order with its bags and their SKUs.
    assert refunded == updated
    assert (refunded["id"], refunded["app_id"], refunded["status"]) == (hooked.bag.order_id, hooked.app.pk, "REFUNDED")
    (bag,) = refunded["bags"]
    assert (bag["id"], bag["status"], bag["financial_status"], bag["total"]) == (
        hooked.bag.pk,
        "REFUNDED",
        "REFUNDED",
        11300,
    )
    assert [(sku["quantity"], sku["price"], sku["line_price"]) for sku in bag["skus"]] == [(2, 5000, 10000)]


def test_a_tampered_body_or_another_secret_does_not_verify(hooked, run_commits):
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    request = hooked.receiver.requests[0]
    signature = request.header("X-Violet-Hmac")

    assert signature_matches(request.body, hooked.secret, signature)
    assert not channel_verifies(request.body.replace(b'"amount":11300', b'"amount":11301'), signature, hooked.secret)
    assert not channel_verifies(request.body + b" ", signature, hooked.secret)
    assert not channel_verifies(request.body, signature, hooked.secret + "x")


def test_each_endpoint_signs_with_its_own_secret(hooked, run_commits):
    second, second_secret = register(hooked.app, hooked.receiver.url + "?second")
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)

    by_webhook = {r.header("X-Violet-Webhook-Id"): r for r in hooked.receiver.requests}
    assert set(by_webhook) == {str(hooked.endpoint.pk), str(second.pk)}
    first, other = by_webhook[str(hooked.endpoint.pk)], by_webhook[str(second.pk)]
    assert first.body == other.body
    assert first.header("X-Violet-Event-Id") == other.header("X-Violet-Event-Id")
    assert channel_verifies(first.body, first.header("X-Violet-Hmac"), hooked.secret)
    assert channel_verifies(other.body, other.header("X-Violet-Hmac"), second_secret)
    assert not channel_verifies(other.body, other.header("X-Violet-Hmac"), hooked.secret)


def test_an_endpoint_gets_only_the_event_types_it_subscribed_to(db, channel, receiver, run_commits):
    register(channel.app, receiver.url, event_types=[EventType.ORDER_REFUNDED, EventType.REFUND_COMPLETED])
    from tests.world import funded_bag

    bag = funded_bag(app=channel.app)
    with run_commits():
        record_refund(bag, external_id="re-1")

    assert receiver.topics() == [EventType.REFUND_COMPLETED, EventType.ORDER_REFUNDED]
    # Events exist for every change all the same: the channel can list them.
    assert WebhookEvent.objects.count() == 4


def test_500s_are_retried_with_growing_backoff_then_succeed(hooked, relay, run_commits):
    hooked.receiver.fail(2, status=500)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.CREATED, 1, 500)
    # The channel's view says the status; the reply's body is for operators only.
    assert delivery.last_error == "HTTP 500"
    assert delivery.last_reply_excerpt == "receiver says no"
    first_wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 169 * 0.8 <= first_wait <= 169 * 1.2

    assert relay().published == 0  # not due yet: nothing is sent early
    make_due()
    relay()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.CREATED, 2)
    second_wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 2 * 169 * 0.8 <= second_wait <= 2 * 169 * 1.2

    make_due()
    relay()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.SUCCEEDED, 3, 200)
    assert delivery.last_error == "" and delivery.date_finished is not None
    requests = hooked.receiver.requests
    assert len(requests) == 3
    # Every attempt is the same event: same id, same bytes, a valid signature.
    assert {r.header("X-Violet-Event-Id") for r in requests} == {str(delivery.event.event_id)}
    assert {r.body for r in requests} == {delivery.event.body.encode()}
    assert all(channel_verifies(r.body, r.header("X-Violet-Hmac"), hooked.secret) for r in requests)


def test_a_slow_endpoint_times_out_and_is_retried(hooked, relay, run_commits, settings):
    settings.NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS = 0.5
    hooked.receiver.stall(1, seconds=2)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get()

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.CREATED, 1, None)
    assert delivery.last_error == "No answer within 0.5 s."
    assert 400 <= delivery.last_duration_ms < 2000
    make_due()
    relay()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    assert len(hooked.receiver.requests) == 2


def test_an_unreachable_endpoint_is_a_failed_attempt(db, channel, run_commits):
    endpoint, _ = register(channel.app, "http://127.0.0.1:9/nothing-listens-here")
    from tests.world import funded_bag

    with run_commits():
        record_refund(funded_bag(app=channel.app), external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.CREATED, 1, None)
    assert delivery.last_error.startswith("Connection failed:")


def test_ten_attempts_over_about_a_day_then_failed(hooked, relay, run_commits):
    hooked.receiver.always_status = 503
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get()
    waits = []
    while delivery.status == DeliveryStatus.CREATED:
        waits.append((delivery.next_attempt_at - delivery.last_attempt_at).total_seconds())
        make_due()
        relay()
        delivery.refresh_from_db()

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.FAILED, 10, 503)
    assert len(hooked.receiver.requests) == 10
    assert len(waits) == 9
    for number, wait in enumerate(waits, start=1):  # each wait doubles, ±20% jitter
        nominal = services.RETRY_BASE_SECONDS * 2 ** (number - 1)
        assert nominal * 0.8 <= wait <= nominal * 1.2, (number, wait)
    assert dt.timedelta(hours=19) < dt.timedelta(seconds=sum(waits)) < dt.timedelta(hours=29)
    make_due()
    relay()
    assert len(hooked.receiver.requests) == 10  # FAILED is final


def test_events_of_one_bag_wait_for_the_earlier_one_and_keep_their_order(hooked, relay, run_commits):
    other_bag = BagFactory(order=OrderFactory(app=hooked.app))
    hooked.receiver.fail(1)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)  # event 1 of the bag: fails once
    with run_commits():
        bag_mark_canceled(bag=hooked.bag, actor="test")  # events 2 and 3 of the bag
        bag_mark_canceled(bag=other_bag, actor="test")  # another bag: not held back

    assert hooked.receiver.topics() == [EventType.REFUND_PROCESSING, EventType.ORDER_CANCELLED, EventType.ORDER_UPDATED]
    assert [r.header("X-Violet-Bag-Id") for r in hooked.receiver.requests[1:]] == [str(other_bag.pk)] * 2
    held = WebhookDelivery.objects.filter(event__bag=hooked.bag, event__sequence__gt=1)
    assert set(held.values_list("status", "attempts")) == {(DeliveryStatus.CREATED, 0)}
    assert relay().published == 0  # the relay does not hand them over either

    make_due(event__sequence=1, event__bag=hooked.bag)
    relay()

    bag_requests = [r for r in hooked.receiver.requests if r.header("X-Violet-Bag-Id") == str(hooked.bag.pk)]
    assert [r.header("X-Violet-Topic") for r in bag_requests] == [
        EventType.REFUND_PROCESSING,
        EventType.REFUND_PROCESSING,
        EventType.ORDER_CANCELLED,
        EventType.ORDER_UPDATED,
    ]
    sequences = [
        WebhookEvent.objects.get(event_id=uuid.UUID(r.header("X-Violet-Event-Id"))).sequence for r in bag_requests
    ]
    assert sequences == [1, 1, 2, 3]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}


def test_a_failed_event_releases_the_next_one(hooked, relay, run_commits, monkeypatch):
    monkeypatch.setattr(delivery_module, "MAX_ATTEMPTS", 2)
    hooked.receiver.fail(2)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
        bag_mark_canceled(bag=hooked.bag, actor="test")
    assert len(hooked.receiver.requests) == 1

    make_due(event__sequence=1)
    relay()

    statuses = dict(WebhookDelivery.objects.values_list("event__sequence", "status"))
    assert statuses == {1: DeliveryStatus.FAILED, 2: DeliveryStatus.SUCCEEDED, 3: DeliveryStatus.SUCCEEDED}
    assert hooked.receiver.topics()[-2:] == [EventType.ORDER_CANCELLED, EventType.ORDER_UPDATED]


def test_a_claimed_delivery_is_not_attempted_twice(hooked, run_commits):
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get()

    outcome = services.delivery_attempt(delivery_id=delivery.pk)  # a redelivered message

    assert outcome.status == DeliveryStatus.SUCCEEDED and outcome.detail == "not waiting"
    assert len(hooked.receiver.requests) == 1


def test_an_attempt_whose_worker_died_is_recovered_by_the_relay(hooked, relay, run_commits):
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get()
    # As if a worker claimed a second copy and was killed mid-POST, long ago.
    long_ago = timezone.now() - services.STUCK_AFTER - dt.timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.IN_PROGRESS, claimed_at=long_ago, attempts=1
    )

    result = relay()

    delivery.refresh_from_db()
    assert (result.recovered, delivery.status, delivery.attempts) == (1, DeliveryStatus.SUCCEEDED, 2)


def test_cancel_bag_then_refund_of_a_canceled_bag_reports_order_updated_not_refunded(hooked, run_commits):
    with run_commits():
        bag_mark_canceled(bag=hooked.bag, actor="platform:shopify")
        record_refund(hooked.bag, external_id="cancel:1")

    hooked.bag.refresh_from_db()
    assert hooked.bag.status == BagStatus.CANCELED
    assert hooked.receiver.topics() == [
        EventType.ORDER_CANCELLED,
        EventType.ORDER_UPDATED,
        EventType.REFUND_PROCESSING,
        EventType.REFUND_COMPLETED,
        EventType.ORDER_UPDATED,
    ]
    last = json.loads(hooked.receiver.requests[-1].body)
    assert (last["bags"][0]["status"], last["bags"][0]["financial_status"]) == ("CANCELED", "REFUNDED")


def test_a_redirect_is_a_failure_not_followed(hooked, run_commits):
    hooked.receiver.fail(1, status=302)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.CREATED, 302)
    assert len(hooked.receiver.requests) == 1

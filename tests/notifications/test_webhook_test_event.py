"""POST /v1/events/webhooks/{id}/test: a signed TEST event to the channel's own webhook, delivered
like every event (SSRF-safe sender, same signature), recorded where the channel sees it, outside
every bag's sequence, scoped to the app and throttled."""

import json
import socket

import pytest

from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.notifications.conftest import record_refund, register
from tests.notifications.test_delivery import channel_verifies

pytestmark = pytest.mark.django_db

WEBHOOKS = "/v1/events/webhooks"


def ask_test(api_client, channel, webhook_id):
    return api_client.post(f"{WEBHOOKS}/{webhook_id}/test", headers=channel.headers)


def test_the_test_event_arrives_signed_and_the_channel_sees_its_delivery(hooked, api_client, run_commits):
    with run_commits():
        response = ask_test(api_client, hooked.channel, hooked.endpoint.pk)

    assert response.status_code == 202
    answer = response.json()
    assert (answer["type"], answer["order_id"], answer["bag_id"], answer["sequence"]) == ("TEST", None, None, None)
    (received,) = hooked.receiver.requests
    assert channel_verifies(received.body, received.header("X-Violet-Hmac"), hooked.secret)
    assert received.header("X-Violet-Topic") == "TEST"
    assert received.header("X-Violet-Event-Id") == answer["id"]
    assert received.header("X-Violet-Webhook-Id") == str(hooked.endpoint.pk)
    assert received.header("X-Violet-Entity-Length") == str(len(received.body))
    assert received.header("X-Violet-Order-Id") is None and received.header("X-Violet-Bag-Id") is None
    body = json.loads(received.body)
    assert (body["type"], body["test"], body["event_id"], body["webhook_id"], body["app_id"]) == (
        "TEST",
        True,
        answer["id"],
        hooked.endpoint.pk,
        hooked.app.pk,
    )

    listed = api_client.get("/v1/events", {"type": "TEST"}, headers=hooked.channel.headers).json()
    (event,) = listed["content"]
    (delivery,) = event["deliveries"]
    assert (event["id"], delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        answer["id"],
        "SUCCEEDED",
        1,
        200,
    )
    assert delivery["last_duration_ms"] is not None


def test_a_failing_test_shows_the_status_never_the_reply_and_is_not_retried(hooked, api_client, run_commits):
    hooked.receiver.fail(1, status=500)
    with run_commits():
        ask_test(api_client, hooked.channel, hooked.endpoint.pk)

    (event,) = api_client.get("/v1/events", {"type": "TEST"}, headers=hooked.channel.headers).json()["content"]
    (delivery,) = event["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"], delivery["last_error"]) == (
        "FAILED",
        1,
        500,
        "HTTP 500",
    )
    assert "receiver says no" not in json.dumps(event)
    assert delivery["next_attempt_at"] is None
    # The probe leaves the webhook's health alone: no failure counted toward a pause.
    hooked.endpoint.refresh_from_db()
    assert (hooked.endpoint.status, hooked.endpoint.failures_in_window, hooked.endpoint.last_failure_at) == (
        WebhookEndpoint.Status.ACTIVE,
        0,
        None,
    )


def test_a_test_event_neither_waits_for_nor_holds_back_the_bags_events(hooked, api_client, run_commits):
    # The bag's first event fails and waits for its retry: the bag's later events wait behind it...
    hooked.receiver.fail(1, status=503)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    waiting = WebhookDelivery.objects.get(event__event_type=EventType.REFUND_PROCESSING)
    assert waiting.status == DeliveryStatus.CREATED

    # ...but a test event goes out at once.
    with run_commits():
        response = ask_test(api_client, hooked.channel, hooked.endpoint.pk)

    assert response.json()["deliveries"][0]["status"] == "CREATED"  # queued: sent on commit
    assert WebhookDelivery.objects.get(event__event_type=EventType.TEST).status == DeliveryStatus.SUCCEEDED
    assert [r.header("X-Violet-Topic") for r in hooked.receiver.requests] == ["REFUND_PROCESSING", "TEST"]
    # The bag's numbering is untouched: its events stay 1..n, the test has no sequence.
    bag_events = WebhookEvent.objects.exclude(event_type=EventType.TEST).order_by("sequence")
    sequences = list(bag_events.values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    assert WebhookEvent.objects.get(event_type=EventType.TEST).sequence is None


def test_a_test_event_to_a_name_resolving_privately_opens_no_connection(
    api_client, channel, run_commits, settings, monkeypatch
):
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    endpoint, _ = register(channel.app, "https://hooks.example.com/violet")
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 443))]
    )
    opened = []
    real_socket = socket.socket

    class RecordingSocket(real_socket):
        def __init__(self, *args, **kwargs):
            opened.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(socket, "socket", RecordingSocket)

    with run_commits():
        response = ask_test(api_client, channel, endpoint.pk)

    assert response.status_code == 202
    assert opened == []
    delivery = WebhookDelivery.objects.get(event__event_type=EventType.TEST)
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.FAILED, None)
    assert delivery.last_error == "Refused: hooks.example.com does not resolve to a public address."


def test_another_apps_webhook_is_a_404_and_gets_nothing(api_client, channel, other_channel, receiver, run_commits):
    theirs, _ = register(other_channel.app, receiver.url)

    with run_commits():
        responses = [ask_test(api_client, channel, theirs.pk), ask_test(api_client, channel, 999999)]

    assert [(r.status_code, r.json()["error_code"]) for r in responses] == [(404, "not_found"), (404, "not_found")]
    assert receiver.requests == []
    assert not WebhookEvent.objects.exists()


def test_credentials_are_needed(api_client, hooked):
    response = api_client.post(f"{WEBHOOKS}/{hooked.endpoint.pk}/test")

    assert (response.status_code, response.json()["error_code"]) == (401, "app_credentials_missing")


def test_a_disabled_webhook_is_a_conflict(hooked, api_client, run_commits):
    hooked.endpoint.status = WebhookEndpoint.Status.DISABLED
    hooked.endpoint.save()

    with run_commits():
        response = ask_test(api_client, hooked.channel, hooked.endpoint.pk)

    assert (response.status_code, response.json()["error_code"]) == (409, "webhook_not_active")
    assert hooked.receiver.requests == []


def test_test_events_are_throttled_per_app(hooked, api_client, run_commits, settings):
    settings.WEBHOOK_TEST_RATE_LIMIT = "2/m"

    with run_commits():
        codes = [ask_test(api_client, hooked.channel, hooked.endpoint.pk).status_code for _ in range(3)]
    refused = ask_test(api_client, hooked.channel, hooked.endpoint.pk)

    assert codes == [202, 202, 429]
    assert refused.json()["error_code"] == "throttled"
    assert int(refused["Retry-After"]) >= 1
    assert len(hooked.receiver.requests) == 2
    # The rest of the API is still open to the app.
    assert api_client.get(WEBHOOKS, headers=hooked.channel.headers).status_code == 200


def test_a_test_event_is_not_resent_and_cannot_be_subscribed_to(hooked, api_client, run_commits):
    with run_commits():
        event_id = ask_test(api_client, hooked.channel, hooked.endpoint.pk).json()["id"]

    resend = api_client.post(
        f"/v1/events/{event_id}/resend", data="{}", content_type="application/json", headers=hooked.channel.headers
    )
    subscribe = api_client.post(
        WEBHOOKS,
        data=json.dumps({"remote_endpoint": "https://other.example/hook", "events": ["TEST"]}),
        content_type="application/json",
        headers=hooked.channel.headers,
    )

    assert (resend.status_code, resend.json()["error_code"]) == (409, "test_event_not_resendable")
    assert (subscribe.status_code, subscribe.json()["error_code"]) == (400, "validation_failed")
    assert len(hooked.receiver.requests) == 1

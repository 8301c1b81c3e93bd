"""The channel API for webhooks: registration and its validation, app isolation (404 for another
app's ids), the events list, and resend."""

import json
import uuid

import pytest

from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from refunds.services import bag_mark_canceled
from tests.factories import BagFactory, OrderFactory
from tests.notifications.conftest import record_refund, register
from tests.notifications.test_delivery import channel_verifies

pytestmark = pytest.mark.django_db

WEBHOOKS = "/v1/events/webhooks"


def post(api_client, channel, path, body=None):
    return api_client.post(path, data=json.dumps(body or {}), content_type="application/json", headers=channel.headers)


def patch(api_client, channel, path, body):
    return api_client.patch(path, data=json.dumps(body), content_type="application/json", headers=channel.headers)


def get(api_client, channel, path, **params):
    return api_client.get(path, params, headers=channel.headers)


# --- registration --------------------------------------------------------------------------------


def test_register_returns_the_secret_once_and_lists_without_it(api_client, channel, settings):
    settings.DEBUG = False
    response = post(
        api_client,
        channel,
        WEBHOOKS,
        {"remote_endpoint": "https://hooks.channel.example/violet", "events": ["ORDER_REFUNDED", "REFUND_FAILED"]},
    )

    assert response.status_code == 201
    body = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["signing_secret"] == endpoint.signing_secret
    assert body["signing_secret"].startswith("whsec_") and len(body["signing_secret"]) > 40
    assert {key: body[key] for key in ("id", "app_id", "remote_endpoint", "events", "status")} == {
        "id": endpoint.pk,
        "app_id": channel.app.pk,
        "remote_endpoint": "https://hooks.channel.example/violet",
        "events": ["ORDER_REFUNDED", "REFUND_FAILED"],
        "status": "ACTIVE",
    }
    assert (body["events_count"], body["failure_rate"], body["temp_disable_ms"]) == (0, 0.0, 0)
    listed = get(api_client, channel, WEBHOOKS)
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json()] == [endpoint.pk]
    assert "signing_secret" not in listed.json()[0]
    assert "signing_secret" not in get(api_client, channel, f"{WEBHOOKS}/{endpoint.pk}").json()


def test_violets_single_event_form_and_an_empty_list_mean_one_type_and_all_types(api_client, channel):
    one = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "https://a.example/h", "event": "ORDER_CANCELLED"})
    every = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "https://b.example/h", "events": []})
    omitted = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "https://c.example/h"})

    assert [r.status_code for r in (one, every, omitted)] == [201, 201, 201]
    assert (one.json()["events"], every.json()["events"], omitted.json()["events"]) == (["ORDER_CANCELLED"], [], [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"remote_endpoint": "http://hooks.channel.example/violet"}, "remote_endpoint"),
        ({"remote_endpoint": "https://127.0.0.1:8443/hook"}, "remote_endpoint"),
        ({"remote_endpoint": "https://localhost/hook"}, "remote_endpoint"),
        ({"remote_endpoint": "https://10.0.0.7/hook"}, "remote_endpoint"),
        ({"remote_endpoint": "https://user:pw@hooks.channel.example/"}, "remote_endpoint"),
        ({"remote_endpoint": "ftp://hooks.channel.example/"}, "remote_endpoint"),
        ({"remote_endpoint": "not a url"}, "remote_endpoint"),
        ({"remote_endpoint": "https://h.example/" + "a" * 500}, "remote_endpoint"),
        ({"remote_endpoint": 42}, "remote_endpoint"),
        ({}, "remote_endpoint"),
        ({"remote_endpoint": "https://h.example/", "events": ["ORDER_SHIPPED"]}, "events"),
        ({"remote_endpoint": "https://h.example/", "events": "ORDER_REFUNDED"}, "events"),
        ({"remote_endpoint": "https://h.example/", "event": "BAG_REFUNDED"}, "event"),
        ({"remote_endpoint": "https://h.example/", "event": "ORDER_REFUNDED", "events": []}, "event"),
        ({"remote_endpoint": "https://h.example/", "secret": "mine"}, "secret"),
    ],
)
def test_registration_rejects_bad_input_in_production(api_client, channel, settings, body, field):
    settings.DEBUG = False
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []  # production: no private network is allowed
    response = post(api_client, channel, WEBHOOKS, body)

    assert response.status_code == 400
    payload = response.json()
    assert (payload["status"], payload["error_code"]) == (400, "validation_failed")
    assert field in payload["errors"]
    assert not WebhookEndpoint.objects.exists()


def test_http_is_refused_in_production_with_a_clear_message(api_client, channel, settings):
    settings.DEBUG = False
    response = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "http://hooks.channel.example/violet"})

    assert response.json()["errors"] == {"remote_endpoint": ["Must be an https:// URL."]}


@pytest.mark.parametrize("debug", [False, True])
def test_a_port_out_of_range_is_a_clear_422_not_a_500(api_client, channel, settings, debug):
    settings.DEBUG = debug
    response = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "https://hooks.channel.example:99999/violet"})

    assert response.status_code == 422
    assert response.json()["errors"] == {"remote_endpoint": ["The port must be a number from 1 to 65535."]}
    assert not WebhookEndpoint.objects.exists()


def test_debug_allows_a_local_http_endpoint(api_client, channel, settings):
    settings.DEBUG = True
    response = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "http://127.0.0.1:8000/hook"})

    assert response.status_code == 201


def test_the_same_url_twice_is_a_conflict(api_client, channel):
    post(api_client, channel, WEBHOOKS, {"remote_endpoint": "https://h.example/hook"})
    again = post(api_client, channel, WEBHOOKS, {"remote_endpoint": "https://h.example/hook"})

    assert again.status_code == 409
    assert again.json()["error_code"] == "webhook_exists"
    assert WebhookEndpoint.objects.count() == 1


def test_patch_changes_url_and_events_and_status(api_client, channel):
    endpoint, _ = register(channel.app, "https://h.example/hook")
    path = f"{WEBHOOKS}/{endpoint.pk}"

    changed = patch(api_client, channel, path, {"remote_endpoint": "https://h.example/v2", "events": ["ORDER_UPDATED"]})
    disabled = patch(api_client, channel, path, {"status": "DISABLED"})
    enabled = patch(api_client, channel, path, {"status": "ACTIVE"})
    paused = patch(api_client, channel, path, {"status": "PAUSED"})

    assert changed.status_code == 200
    assert (changed.json()["remote_endpoint"], changed.json()["events"]) == ("https://h.example/v2", ["ORDER_UPDATED"])
    assert (disabled.json()["status"], enabled.json()["status"]) == ("DISABLED", "ACTIVE")
    assert paused.status_code == 400  # only the delivery machinery pauses
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types, endpoint.status) == (
        "https://h.example/v2",
        ["ORDER_UPDATED"],
        "ACTIVE",
    )


def test_a_paused_webhook_says_when_it_resumes(api_client, channel):
    from datetime import timedelta

    from django.utils import timezone

    endpoint, _ = register(channel.app, "https://h.example/hook")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        status=WebhookEndpoint.Status.PAUSED, paused_until=timezone.now() + timedelta(hours=1)
    )

    body = get(api_client, channel, f"{WEBHOOKS}/{endpoint.pk}").json()

    assert body["status"] == "PAUSED"
    assert 3_590_000 < body["temp_disable_ms"] <= 3_600_000


def test_delete_removes_the_webhook(api_client, channel):
    endpoint, _ = register(channel.app, "https://h.example/hook")
    path = f"{WEBHOOKS}/{endpoint.pk}"

    assert api_client.delete(path, headers=channel.headers).status_code == 204
    assert get(api_client, channel, path).status_code == 404
    assert not WebhookEndpoint.objects.exists()


def test_another_apps_webhook_is_a_404_everywhere(api_client, channel, other_channel):
    theirs, _ = register(other_channel.app, "https://theirs.example/hook")
    path = f"{WEBHOOKS}/{theirs.pk}"

    responses = [
        get(api_client, channel, path),
        patch(api_client, channel, path, {"status": "DISABLED"}),
        api_client.delete(path, headers=channel.headers),
        get(api_client, channel, f"{WEBHOOKS}/999999"),
    ]

    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert {r.json()["error_code"] for r in responses} == {"not_found"}
    assert get(api_client, channel, WEBHOOKS).json() == []
    theirs.refresh_from_db()
    assert theirs.status == WebhookEndpoint.Status.ACTIVE


def test_webhooks_need_the_channel_credentials(api_client, channel):
    response = api_client.get(WEBHOOKS)

    assert response.status_code == 401
    assert response.json()["error_code"] == "app_credentials_missing"


# --- events --------------------------------------------------------------------------------------


def test_events_list_is_the_apps_own_newest_first_paginated_and_filtered(
    api_client, channel, other_channel, run_commits
):
    bags = [BagFactory(order=OrderFactory(app=channel.app)) for _ in range(3)]
    with run_commits():
        for bag in bags:
            bag_mark_canceled(bag=bag, actor="test")
        bag_mark_canceled(bag=BagFactory(order=OrderFactory(app=other_channel.app)), actor="test")

    first = get(api_client, channel, "/v1/events", size=4).json()
    second = get(api_client, channel, "/v1/events", size=4, page=2).json()
    cancelled = get(api_client, channel, "/v1/events", type="ORDER_CANCELLED").json()
    of_order = get(api_client, channel, "/v1/events", order_id=bags[1].order_id).json()

    assert (first["total_elements"], first["total_pages"], first["number"], first["first"], first["last"]) == (
        6,
        2,
        1,
        True,
        False,
    )
    assert (len(first["content"]), len(second["content"]), second["last"]) == (4, 2, True)
    own = WebhookEvent.objects.filter(app=channel.app).order_by("-id")
    assert [e["id"] for e in first["content"] + second["content"]] == [str(e.event_id) for e in own]
    assert [e["type"] for e in cancelled["content"]] == ["ORDER_CANCELLED"] * 3
    assert {(e["order_id"], e["bag_id"]) for e in of_order["content"]} == {(bags[1].order_id, bags[1].pk)}
    event = first["content"][0]
    assert event["payload"]["bags"][0]["status"] == "CANCELED"
    assert (event["deliveries"], event["event_id_source"]) == ([], None)


@pytest.mark.parametrize(
    "params", [{"type": "BAG_REFUNDED"}, {"order_id": "abc"}, {"page": 0}, {"size": 101}, {"size": "x"}]
)
def test_events_list_rejects_bad_filters(api_client, channel, params):
    response = get(api_client, channel, "/v1/events", **params)

    assert response.status_code == 400
    assert response.json()["error_code"] == "validation_failed"


def test_events_list_shows_delivery_state(hooked, api_client, run_commits):
    hooked.receiver.fail(1)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)

    (event,) = get(api_client, hooked.channel, "/v1/events").json()["content"]
    (delivery,) = event["deliveries"]
    assert (delivery["webhook_id"], delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        hooked.endpoint.pk,
        "CREATED",
        1,
        500,
    )
    assert delivery["next_attempt_at"] is not None
    webhook = get(api_client, hooked.channel, f"{WEBHOOKS}/{hooked.endpoint.pk}").json()
    assert (webhook["events_count"], webhook["failure_rate"]) == (1, 1.0)


# --- resend --------------------------------------------------------------------------------------


def test_resend_sends_the_same_body_as_a_new_event_naming_the_original(hooked, api_client, run_commits):
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    original = WebhookEvent.objects.get()

    with run_commits():
        response = post(api_client, hooked.channel, f"/v1/events/{original.event_id}/resend")

    assert response.status_code == 202
    body = response.json()
    assert body["event_id_source"] == str(original.event_id)
    assert body["id"] != str(original.event_id)
    assert (body["type"], body["sequence"]) == ("REFUND_PROCESSING", 2)
    first, resent = hooked.receiver.requests
    assert resent.body == first.body
    assert resent.header("X-Violet-Event-Id") == body["id"]
    assert resent.header("X-Violet-Event-Id-Source") == str(original.event_id)
    assert first.header("X-Violet-Event-Id-Source") is None
    assert channel_verifies(resent.body, resent.header("X-Violet-Hmac"), hooked.secret)
    assert WebhookDelivery.objects.filter(event__resent_from=original, status=DeliveryStatus.SUCCEEDED).count() == 1


def test_resend_to_one_webhook(hooked, api_client, run_commits, receiver):
    second, _ = register(hooked.app, receiver.url + "?second")
    with run_commits():
        bag_mark_canceled(bag=hooked.bag, actor="test")
    original = WebhookEvent.objects.get(event_type=EventType.ORDER_CANCELLED)

    with run_commits():
        response = post(api_client, hooked.channel, f"/v1/events/{original.event_id}/resend", {"webhook_id": second.pk})

    assert response.status_code == 202
    assert [d["webhook_id"] for d in response.json()["deliveries"]] == [second.pk]
    assert receiver.requests[-1].header("X-Violet-Webhook-Id") == str(second.pk)
    assert len(receiver.requests) == 4 + 1


def test_resend_isolation_and_bad_ids(hooked, api_client, other_channel, run_commits):
    theirs, _ = register(other_channel.app, "https://theirs.example/hook")
    with run_commits():
        bag_mark_canceled(bag=BagFactory(order=OrderFactory(app=other_channel.app)), actor="test")
        bag_mark_canceled(bag=hooked.bag, actor="test")
    their_event = WebhookEvent.objects.filter(app=other_channel.app).first()
    own_event = WebhookEvent.objects.filter(app=hooked.app).first()
    before = WebhookEvent.objects.count()

    responses = {
        "their event": post(api_client, hooked.channel, f"/v1/events/{their_event.event_id}/resend"),
        "unknown event": post(api_client, hooked.channel, f"/v1/events/{uuid.uuid4()}/resend"),
        "not a uuid": post(api_client, hooked.channel, "/v1/events/12345/resend"),
        "their webhook": post(
            api_client, hooked.channel, f"/v1/events/{own_event.event_id}/resend", {"webhook_id": theirs.pk}
        ),
    }
    bad_body = post(api_client, hooked.channel, f"/v1/events/{own_event.event_id}/resend", {"webhook_id": "x"})

    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(responses, 404)
    assert bad_body.status_code == 400
    assert WebhookEvent.objects.count() == before


def test_resend_without_a_receiving_webhook_is_a_conflict(api_client, channel, run_commits):
    with run_commits():
        bag_mark_canceled(bag=BagFactory(order=OrderFactory(app=channel.app)), actor="test")
    event = WebhookEvent.objects.first()

    response = post(api_client, channel, f"/v1/events/{event.event_id}/resend")

    assert response.status_code == 409
    assert response.json()["error_code"] == "no_webhook_subscribed"

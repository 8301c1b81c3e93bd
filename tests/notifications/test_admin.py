"""The admin: operators see endpoints (status, failure rate), events and deliveries (status, attempts,
last error), resume or disable endpoints and resend; admins also register and edit endpoints;
viewers only look."""

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils.html import escape

from notifications.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.notifications.conftest import record_refund, register
from tests.notifications.test_delivery import channel_verifies

pytestmark = pytest.mark.django_db


def url(model: str, view: str, *args) -> str:
    return reverse(f"admin:notifications_{model}_{view}", args=args)


@pytest.fixture
def failed_once(hooked, run_commits):
    """One delivery that failed once (500) and waits for its retry."""
    hooked.receiver.fail(1)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    return WebhookDelivery.objects.get()


def test_operator_sees_deliveries_with_status_attempts_and_last_error(operator_client, failed_once):
    response = operator_client.get(url("webhookdelivery", "changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "HTTP 500: receiver says no" in page
    assert "CREATED" in page
    assert EventType.REFUND_PROCESSING in page
    actions = [value for value, _label in response.context["action_form"].fields["action"].choices]
    assert "resend_deliveries" in actions


def test_operator_sees_endpoints_with_failure_rate_and_actions(operator_client, failed_once, run_commits):
    response = operator_client.get(url("webhookendpoint", "changelist"))

    assert response.status_code == 200
    assert "100% of 1 attempts" in response.content.decode()
    actions = [value for value, _label in response.context["action_form"].fields["action"].choices]
    assert {"resume_endpoints", "disable_endpoints"} <= set(actions)
    detail = operator_client.get(url("webhookendpoint", "change", failed_once.endpoint_id))
    assert detail.status_code == 200
    assert "Set (shown once, at registration)" in detail.content.decode()


def test_event_page_shows_the_body_and_its_deliveries(operator_client, failed_once):
    response = operator_client.get(url("webhookevent", "change", failed_once.event_id))

    assert response.status_code == 200
    page = response.content.decode()
    assert "&quot;status&quot;: &quot;PROCESSING&quot;" in page
    assert "receiver says no" in page


@pytest.fixture
def failed_for_good(hooked, run_commits, monkeypatch):
    """One delivery that used up its attempts: FAILED."""
    from notifications.services import delivery as delivery_service

    monkeypatch.setattr(delivery_service, "MAX_ATTEMPTS", 1)
    hooked.receiver.fail(1)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    return delivery


def test_resend_selected_failed_deliveries_sends_a_new_event(operator_client, failed_for_good, hooked, run_commits):
    with run_commits():
        response = operator_client.post(
            url("webhookdelivery", "changelist"),
            {"action": "resend_deliveries", "_selected_action": [failed_for_good.pk]},
            follow=True,
        )

    assert response.status_code == 200
    assert any("Resent 1 event" in str(m) for m in get_messages(response.wsgi_request))
    resent = WebhookEvent.objects.get(resent_from=failed_for_good.event)
    first, second = hooked.receiver.requests
    assert second.header("X-Violet-Event-Id") == str(resent.event_id)
    assert second.header("X-Violet-Event-Id-Source") == str(failed_for_good.event.event_id)
    assert second.body == first.body
    assert channel_verifies(second.body, second.header("X-Violet-Hmac"), hooked.secret)
    assert resent.deliveries.get().status == DeliveryStatus.SUCCEEDED


def test_resend_of_a_delivery_waiting_for_its_retry_retries_it_now(operator_client, failed_once, hooked, run_commits):
    with run_commits():
        response = operator_client.post(
            url("webhookdelivery", "changelist"),
            {"action": "resend_deliveries", "_selected_action": [failed_once.pk]},
            follow=True,
        )

    assert any("retried now" in str(m) for m in get_messages(response.wsgi_request))
    assert not WebhookEvent.objects.filter(resent_from__isnull=False).exists()
    failed_once.refresh_from_db()
    assert (failed_once.status, failed_once.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    first, second = hooked.receiver.requests
    assert first.header("X-Violet-Event-Id") == second.header("X-Violet-Event-Id")


def test_resend_selected_events(operator_client, failed_for_good, hooked, run_commits):
    with run_commits():
        response = operator_client.post(
            url("webhookevent", "changelist"),
            {"action": "resend_events", "_selected_action": [failed_for_good.event_id]},
            follow=True,
        )

    assert response.status_code == 200
    assert WebhookEvent.objects.filter(resent_from=failed_for_good.event).count() == 1
    assert len(hooked.receiver.requests) == 2


def test_resend_to_a_disabled_endpoint_is_refused_with_the_reason(operator_client, failed_once, hooked):
    WebhookEndpoint.objects.filter(pk=hooked.endpoint.pk).update(status=WebhookEndpoint.Status.DISABLED)
    response = operator_client.post(
        url("webhookdelivery", "changelist"),
        {"action": "resend_deliveries", "_selected_action": [failed_once.pk]},
        follow=True,
    )

    assert any("disabled" in str(m) for m in get_messages(response.wsgi_request))
    assert not WebhookEvent.objects.filter(resent_from__isnull=False).exists()


def test_disable_then_resume_from_the_list(operator_client, failed_once, hooked):
    changelist = url("webhookendpoint", "changelist")
    operator_client.post(changelist, {"action": "disable_endpoints", "_selected_action": [hooked.endpoint.pk]})
    hooked.endpoint.refresh_from_db()
    failed_once.refresh_from_db()
    assert hooked.endpoint.status == WebhookEndpoint.Status.DISABLED
    assert failed_once.status == DeliveryStatus.CANCELLED

    operator_client.post(changelist, {"action": "resume_endpoints", "_selected_action": [hooked.endpoint.pk]})
    hooked.endpoint.refresh_from_db()
    assert hooked.endpoint.status == WebhookEndpoint.Status.ACTIVE


def test_admin_registers_an_endpoint_and_sees_its_secret_once(admin_client, channel, settings):
    settings.DEBUG = False
    response = admin_client.post(
        url("webhookendpoint", "add"),
        {"app": channel.app.pk, "url": "https://hooks.channel.example/violet", "event_types": ["ORDER_REFUNDED"]},
        follow=True,
    )

    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.app, endpoint.url, endpoint.event_types) == (
        channel.app,
        "https://hooks.channel.example/violet",
        ["ORDER_REFUNDED"],
    )
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(endpoint.signing_secret in m for m in shown)
    again = admin_client.get(url("webhookendpoint", "change", endpoint.pk))
    assert endpoint.signing_secret not in again.content.decode()


def test_the_admin_form_applies_the_api_rules(admin_client, channel, settings):
    settings.DEBUG = False
    register(channel.app, "https://hooks.channel.example/violet")
    add = url("webhookendpoint", "add")

    insecure = admin_client.post(add, {"app": channel.app.pk, "url": "http://hooks.channel.example/x"})
    duplicate = admin_client.post(add, {"app": channel.app.pk, "url": "https://hooks.channel.example/violet"})
    unknown_type = admin_client.post(
        add, {"app": channel.app.pk, "url": "https://other.example/", "event_types": ["ORDER_SHIPPED"]}
    )

    assert insecure.context["adminform"].form.errors["url"] == ["Must be an https:// URL."]
    assert "already has a webhook" in duplicate.context["adminform"].form.errors["url"][0]
    assert "event_types" in unknown_type.context["adminform"].form.errors
    assert WebhookEndpoint.objects.count() == 1


def test_admin_changes_an_endpoints_events(admin_client, channel):
    endpoint, _ = register(channel.app, "https://hooks.channel.example/violet")

    response = admin_client.post(
        url("webhookendpoint", "change", endpoint.pk),
        {"url": "https://hooks.channel.example/v2", "event_types": ["ORDER_CANCELLED", "ORDER_UPDATED"]},
    )

    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types, endpoint.app) == (
        "https://hooks.channel.example/v2",
        ["ORDER_CANCELLED", "ORDER_UPDATED"],
        channel.app,
    )


def test_viewer_reads_but_cannot_act(viewer_client, failed_once, hooked):
    for page in (
        url("webhookendpoint", "changelist"),
        url("webhookevent", "changelist"),
        url("webhookdelivery", "changelist"),
        url("webhookdelivery", "change", failed_once.pk),
    ):
        assert viewer_client.get(page).status_code == 200, page
    response = viewer_client.get(url("webhookdelivery", "changelist"))
    assert response.context["action_form"] is None or "resend_deliveries" not in [
        value for value, _ in response.context["action_form"].fields["action"].choices
    ]
    viewer_client.post(
        url("webhookdelivery", "changelist"), {"action": "resend_deliveries", "_selected_action": [failed_once.pk]}
    )
    viewer_client.post(
        url("webhookendpoint", "changelist"),
        {"action": "disable_endpoints", "_selected_action": [hooked.endpoint.pk]},
    )
    assert not WebhookEvent.objects.filter(resent_from__isnull=False).exists()
    hooked.endpoint.refresh_from_db()
    assert hooked.endpoint.status == WebhookEndpoint.Status.ACTIVE
    assert viewer_client.get(url("webhookendpoint", "add")).status_code == 403


def test_delivery_page_shows_the_payload_sent_and_the_reply(operator_client, failed_once):
    page = operator_client.get(url("webhookdelivery", "change", failed_once.pk)).content.decode()
    assert 'class="delivery-payload"' in page
    sent = json.dumps(json.loads(failed_once.event.body), indent=2, sort_keys=True)
    assert escape(sent) in page  # the exact payload, pretty-printed
    assert "500" in page and "receiver says no" in page  # the response status and body excerpt
    assert page.index("Request and response") < page.index("Attempts")

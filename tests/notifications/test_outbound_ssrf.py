"""SSRF through DNS names (issue 19, item 1), end to end: registration refuses names resolving
privately when DEBUG is off; a delivery to a name that resolves privately at send time (DNS
rebinding after registration) is refused without a connection; the channel sees the status code
and timing of an attempt, never the reply's body, which operators see in the admin."""

import json
import socket

import pytest
from django.urls import reverse

from notifications.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from tests.notifications.conftest import record_refund, register

pytestmark = pytest.mark.django_db

WEBHOOKS = "/v1/events/webhooks"


def _resolver(mapping):
    real = socket.getaddrinfo

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        if host in mapping:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (mapping[host], port or 443))]
        return real(host, port, family, type, proto, flags)

    return fake


@pytest.mark.parametrize(
    ("name", "address"),
    [("localtest.me", "127.0.0.1"), ("metadata.attacker.example", "169.254.169.254"), ("ten.example", "10.1.2.3")],
)
def test_registration_refuses_names_resolving_privately_in_production(
    api_client, channel, settings, monkeypatch, name, address
):
    settings.DEBUG = False
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({name: address}))

    response = api_client.post(
        WEBHOOKS,
        data=json.dumps({"remote_endpoint": f"https://{name}/hook"}),
        content_type="application/json",
        headers=channel.headers,
    )

    assert response.status_code == 400
    body = response.json()
    assert (body["status"], body["error_code"]) == (400, "validation_failed")
    assert body["errors"] == {
        "remote_endpoint": [f"{name} resolves to a local or private address; webhooks go to public hosts only."]
    }
    assert address not in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_registration_accepts_a_name_resolving_publicly(api_client, channel, settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"hooks.channel.example": "93.184.215.14"}))
    response = api_client.post(
        WEBHOOKS,
        data=json.dumps({"remote_endpoint": "https://hooks.channel.example/h"}),
        content_type="application/json",
        headers=channel.headers,
    )
    assert response.status_code == 201


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254"])
def test_a_delivery_to_a_name_rebound_to_a_private_address_is_refused_without_a_connection(
    db, channel, settings, monkeypatch, run_commits, address
):
    settings.DEBUG = False
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = []
    mapping = {"hooks.channel.example": "93.184.215.14"}
    monkeypatch.setattr(socket, "getaddrinfo", _resolver(mapping))
    endpoint, _ = register(channel.app, "https://hooks.channel.example/violet")  # public at registration
    mapping["hooks.channel.example"] = address  # ... and private at send time
    from tests.world import funded_bag

    bag = funded_bag(app=channel.app)
    opened = []

    def forbidden(*args, **kwargs):
        opened.append(args)
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket, "socket", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    with run_commits():
        record_refund(bag, external_id="re-ssrf", enqueue=False)
    monkeypatch.undo()

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert opened == []
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.CREATED, 1, None)
    assert delivery.last_error == "Refused: hooks.channel.example does not resolve to a public address."


def test_the_channel_sees_status_and_timing_never_the_reply_body(api_client, hooked, run_commits, operator_client):
    hooked.receiver.fail(1, status=500)
    with run_commits():
        record_refund(hooked.bag, external_id="re-1", enqueue=False)

    response = api_client.get("/v1/events", headers=hooked.channel.headers)

    assert response.status_code == 200
    text = response.content.decode()
    assert "receiver says no" not in text
    deliveries = [d for event in response.json()["content"] for d in event["deliveries"]]
    failed = [d for d in deliveries if d["last_status_code"] == 500]
    assert failed and failed[0]["last_error"] == "HTTP 500"
    assert isinstance(failed[0]["last_duration_ms"], int)
    # Operators see the excerpt.
    delivery = WebhookDelivery.objects.get(last_status_code=500)
    page = operator_client.get(reverse("admin:notifications_webhookdelivery_change", args=[delivery.pk]))
    assert "receiver says no" in page.content.decode()

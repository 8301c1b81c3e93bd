"""Error tracking (issue #18 item 4): with sentry-sdk on, the secrets of the channel API, the platforms'
signatures, Stripe, cookies and store credentials never reach an event (SDK test transport)."""

from __future__ import annotations

import pytest
import sentry_sdk
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import path
from sentry_sdk.transport import Transport

from violet_refunds import sentry

SECRETS = {
    "X-Violet-App-Secret": "app-secret-4f1d9a",
    "X-Violet-Token": "token-eyJhbGciOi-77",
    "X-Violet-Hmac": "hmac-b64-Zm9vYmFy",
    "X-Shopify-Hmac-Sha256": "shopify-hmac-93kd",
    "X-WC-Webhook-Signature": "woo-signature-5ab1",
    "X-Ecwid-Webhook-Signature": "ecwid-signature-0c2e",
    "Stripe-Signature": "t=1,v1=stripe-signature-8f7e",
    "Authorization": "Bearer bigcommerce-webhook-secret-61",
    "X-Auth-Token": "bigcommerce-access-token-22",
    "Cookie": "sessionid=session-cookie-value-19; csrftoken=csrf-cookie-value-4",
}
STORE_ACCESS_TOKEN = "shpat_store-access-token-0001"
STRIPE_KEY = "sk_live_51Hv3ryS3cretKey"


def failing_view(request):
    credentials = {"access_token": STORE_ACCESS_TOKEN, "shop_domain": "demo.myshopify.com"}  # noqa: F841
    api_key_in_a_message = f"calling Stripe with {STRIPE_KEY}"  # noqa: F841
    raise RuntimeError("the platform answered something unexpected")


def ok_view(request):
    return HttpResponse("ok")


urlpatterns = [path("boom/", failing_view), path("ok/", ok_view)]


class CapturingTransport(Transport):
    """The SDK's transport interface, keeping envelopes in memory instead of sending them."""

    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)

    def serialized(self) -> str:
        return "".join(envelope.serialize().decode("utf-8", "replace") for envelope in self.envelopes)

    def events(self) -> list[dict]:
        return [item.payload.json for envelope in self.envelopes for item in envelope.items if item.type == "event"]


@pytest.fixture
def transport(settings):
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    settings.ROOT_URLCONF = __name__
    capturing = CapturingTransport()
    sentry_sdk.init(
        dsn="https://public@sentry.example.com/1",
        transport=capturing,
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
        max_request_body_size="never",
        before_send=sentry.scrub_event,
        before_send_transaction=sentry.scrub_event,
        include_local_variables=True,
    )
    yield capturing
    sentry_sdk.flush()
    sentry_sdk.init()  # no DSN: off again for the rest of the suite


def _wsgi_call(request) -> str:
    """Through Django's WSGI handler, as gunicorn calls it (the SDK binds the request there; the test
    Client bypasses that entry point)."""
    from django.core.handlers.wsgi import WSGIHandler

    status = {}

    def start_response(line, headers, exc_info=None):
        status["line"] = line

    b"".join(WSGIHandler()(request.environ, start_response))
    return status["line"]


@pytest.mark.django_db
def test_a_500_reaches_sentry_without_any_secret(transport):
    request = RequestFactory().get("/boom/", {"token": "query-token-31", "note": "hello"}, headers=SECRETS)

    status = _wsgi_call(request)
    sentry_sdk.flush()

    assert status.startswith("500")
    events = transport.events()
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["value"] == "the platform answered something unexpected"
    headers = {name.lower(): value for name, value in event["request"]["headers"].items()}
    for name in SECRETS:  # present, filtered: the operator sees that they were sent
        assert headers[name.lower()] == "[Filtered]", name
    sent = transport.serialized()
    for value in [*SECRETS.values(), STORE_ACCESS_TOKEN, STRIPE_KEY, "query-token-31"]:
        for fragment in value.replace(";", " ").replace("=", " ").split():
            if len(fragment) > 8:
                assert fragment not in sent, f"{fragment!r} reached the Sentry event"


def test_the_scrubber_filters_names_and_secret_looking_values():
    event = {
        "request": {
            "headers": [["X-Violet-Token", "abc"], ["Accept", "application/json"]],
            "env": {"HTTP_X_SHOPIFY_HMAC_SHA256": "xyz"},
        },
        "extra": {"credentials": {"api_key": "k"}, "note": "key sk_test_abc123 and vrk_merchantkey"},
        "breadcrumbs": {"values": [{"data": {"client_secret": "s", "refund_id": 12}}]},
    }

    scrubbed = sentry.scrub_event(event)

    assert scrubbed["request"]["headers"] == [["X-Violet-Token", "[Filtered]"], ["Accept", "application/json"]]
    assert scrubbed["request"]["env"] == {"HTTP_X_SHOPIFY_HMAC_SHA256": "[Filtered]"}
    assert scrubbed["extra"]["credentials"] == "[Filtered]"
    assert scrubbed["extra"]["note"] == "key [Filtered] and [Filtered]"
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"client_secret": "[Filtered]", "refund_id": 12}


def test_sentry_stays_off_without_a_dsn(settings):
    assert settings.SENTRY_DSN == ""
    assert sentry_sdk.get_client().transport is None  # nothing is ever sent


def test_mail_settings_name_a_real_sender(settings):
    assert settings.SERVER_EMAIL != "root@localhost"
    assert settings.DEFAULT_FROM_EMAIL != "webmaster@localhost"


def test_init_switches_on_the_django_celery_and_redis_integrations_with_the_scrubber():
    try:
        sentry.init(dsn="https://public@sentry.example.com/1", environment="ci", release="", traces_sample_rate=0.0)
        client = sentry_sdk.get_client()
        assert {"django", "celery", "redis"} <= set(client.integrations)
        assert client.options["before_send"] is sentry.scrub_event
        assert client.options["environment"] == "ci"
    finally:
        sentry_sdk.init()


def test_admins_are_read_as_name_and_address():
    from violet_refunds.settings import _admin

    assert _admin("Ops Team <ops@example.com>") == ("Ops Team", "ops@example.com")
    assert _admin("oncall@example.com") == ("oncall@example.com", "oncall@example.com")

"""/metrics (issue #18 item 5): protected by a token or a network, Prometheus text with the request
latency per view, Stripe calls by outcome, and what the database and the broker hold at scrape time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from notifications.models import DeliveryStatus
from platforms.models import InboundEvent
from refunds.models import Refund, RefundStatus
from tests.factories import InboundEventFactory, RefundFactory, WebhookDeliveryFactory, WebhookEndpointFactory
from violet_refunds import queues

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []


def scrape(**extra) -> dict[tuple[str, tuple], float]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted((key, str(item)) for key, item in labels.items()))))


def test_without_the_token_or_an_allowed_network_metrics_are_refused(metrics_on):
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_nobody_may_scrape_when_nothing_is_configured(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []

    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_an_allowed_network_may_scrape_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]

    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.10").get("/metrics").status_code == 401


def test_a_scraper_reaching_the_pod_by_ip_is_served_with_debug_off(metrics_on, settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["refunds.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    response = Client().get("/metrics", HTTP_HOST="10.12.0.7:8000", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200


def test_refunds_by_status_stuck_and_failed(metrics_on, settings):
    settings.REFUND_STUCK_AFTER_SECONDS = 900
    old = timezone.now() - timedelta(hours=1)
    RefundFactory(status=RefundStatus.COMPLETED)
    RefundFactory(status=RefundStatus.FAILED)
    RefundFactory(status=RefundStatus.FAILED)
    fresh = RefundFactory(status=RefundStatus.PROCESSING)
    stuck = RefundFactory(status=RefundStatus.PROCESSING)
    Refund.objects.filter(pk=stuck.pk).update(next_attempt_at=old)
    Refund.objects.filter(pk=fresh.pk).update(next_attempt_at=timezone.now())

    samples = scrape()

    assert value(samples, "violet_refunds", status="COMPLETED") == 1
    assert value(samples, "violet_refunds", status="FAILED") == 2
    assert value(samples, "violet_refunds", status="PROCESSING") == 2
    assert value(samples, "violet_refunds", status="EXTERNAL") == 0
    assert value(samples, "violet_refunds_stuck") == 1
    assert value(samples, "violet_refunds_failed_last_24h", status="FAILED") == 2


def test_refund_processing_time_from_recorded_to_completed(metrics_on):
    now = timezone.now()
    for seconds in (10, 40, 4000):
        refund = RefundFactory(status=RefundStatus.COMPLETED)
        Refund.objects.filter(pk=refund.pk).update(date_created=now - timedelta(seconds=seconds), date_completed=now)
    RefundFactory(status=RefundStatus.PROCESSING)

    samples = scrape()

    name = "violet_refund_processing_seconds_bucket"
    assert value(samples, name, le="5.0") == 0
    assert value(samples, name, le="15.0") == 1
    assert value(samples, name, le="60.0") == 2
    assert value(samples, name, le="3600.0") == 2
    assert value(samples, name, le="+Inf") == 3
    assert value(samples, "violet_refund_processing_seconds_count") == 3
    assert value(samples, "violet_refund_processing_seconds_sum") == pytest.approx(4050, abs=1)


def test_inbound_events_by_platform_and_outcome(metrics_on):
    InboundEventFactory(connection__merchant__platform="SHOPIFY", status=InboundEvent.Status.PROCESSED)
    InboundEventFactory(connection__merchant__platform="SHOPIFY", status=InboundEvent.Status.FAILED)
    InboundEventFactory(connection__merchant__platform="ECWID", status=InboundEvent.Status.RETRYING)

    samples = scrape()

    assert value(samples, "violet_inbound_events_last_24h", platform="SHOPIFY", status="PROCESSED") == 1
    assert value(samples, "violet_inbound_events_last_24h", platform="SHOPIFY", status="FAILED") == 1
    assert value(samples, "violet_inbound_events_open", platform="ECWID", status="RETRYING") == 1
    assert value(samples, "violet_inbound_events_open", platform="SHOPIFY", status="FAILED") is None


def test_deliveries_due_and_failing_per_endpoint(metrics_on):
    endpoint = WebhookEndpointFactory()
    other = WebhookEndpointFactory()
    now = timezone.now()
    WebhookDeliveryFactory(endpoint=endpoint, event__app=endpoint.app, status=DeliveryStatus.CREATED, attempts=0)
    WebhookDeliveryFactory(
        endpoint=endpoint,
        event__app=endpoint.app,
        status=DeliveryStatus.CREATED,
        attempts=3,
        next_attempt_at=now + timedelta(minutes=5),
    )
    WebhookDeliveryFactory(endpoint=other, event__app=other.app, status=DeliveryStatus.FAILED, date_finished=now)

    samples = scrape()

    assert value(samples, "violet_webhook_deliveries_due", endpoint_id=endpoint.pk) == 1
    assert value(samples, "violet_webhook_deliveries_failing", endpoint_id=endpoint.pk) == 1
    assert value(samples, "violet_webhook_deliveries_failed_last_24h", endpoint_id=other.pk) == 1
    assert value(samples, "violet_webhook_deliveries_failed_last_24h", endpoint_id=endpoint.pk) == 0


def test_celery_queue_lengths_from_redis(metrics_on, settings, redis_url):
    import redis

    settings.CELERY_BROKER_URL = redis_url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    client = redis.Redis.from_url(redis_url)
    client.delete(*queues.QUEUES, "notifications\x06\x166")
    client.rpush("refunds", "m1", "m2")
    client.rpush("notifications\x06\x166", "m3")  # a message of priority 6 sits in its own list
    try:
        samples = scrape()
    finally:
        client.delete(*queues.QUEUES, "notifications\x06\x166")

    assert value(samples, "violet_celery_queue_length", queue="refunds") == 2
    assert value(samples, "violet_celery_queue_length", queue="notifications") == 1
    assert value(samples, "violet_celery_queue_length", queue="periodic") == 0
    assert value(samples, "violet_broker_up") == 1


def test_request_latency_per_view(metrics_on):
    before = value(
        scrape(), "violet_http_request_duration_seconds_count", method="GET", status="2xx", view="portal:login"
    )

    Client().get("/portal/login/")
    after = value(
        scrape(), "violet_http_request_duration_seconds_count", method="GET", status="2xx", view="portal:login"
    )

    assert after == (before or 0) + 1


def test_stripe_calls_are_counted_by_outcome(metrics_on):
    from payments.gateway import PermanentGatewayError, get_gateway

    def count(outcome):
        return value(scrape(), "violet_stripe_calls_total", operation="Refund.retrieve", outcome=outcome) or 0

    ok_before, refused_before = count("ok"), count("permanent")
    with pytest.raises(PermanentGatewayError):
        get_gateway().retrieve_refund("re_does_not_exist")

    assert count("permanent") == refused_before + 1
    assert count("ok") == ok_before

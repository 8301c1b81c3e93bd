"""The demo world tells a month's story: refunds spread over the last 30 days, every one settled (none
turns "stuck" by itself after `make run`), and the failures operators triage."""

import datetime as dt
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from platforms.models import InboundEvent
from refunds.models import Refund, RefundStatus
from refunds.selectors import refunds_stuck_queryset

# Real commits, as `make run` does: each refund is processed right after it is recorded, while the
# sandbox fault meant for it is armed.
pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_spreads_refunds_over_30_days_and_leaves_none_to_turn_stuck(settings):
    settings.STRIPE_API_KEY = ""
    call_command("seed_demo", stdout=StringIO())
    refunds = list(Refund.objects.all())
    assert refunds
    now = timezone.now()
    days = {timezone.localtime(refund.date_created).date() for refund in refunds}
    assert len(days) >= 15
    assert all(now - refund.date_created < dt.timedelta(days=30) for refund in refunds)
    assert not Refund.objects.filter(status=RefundStatus.PROCESSING).exists()
    later = now + dt.timedelta(seconds=settings.REFUND_STUCK_AFTER_SECONDS * 10)
    assert not refunds_stuck_queryset(later).exists()
    assert {RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED, RefundStatus.EXTERNAL} <= {r.status for r in refunds}
    for refund in refunds:  # the trail moved with its refund
        assert all(event.date_created >= refund.date_created - dt.timedelta(seconds=5) for event in refund.events.all())


def test_seed_demo_adds_inbound_events_and_a_webhook_endpoint_with_delivered_and_failing_deliveries(settings):
    settings.STRIPE_API_KEY = ""
    call_command("seed_demo", stdout=StringIO())

    events = {event.event_id: event for event in InboundEvent.objects.all()}
    processed = events["demo-shopify-refund-processed"]
    assert processed.status == InboundEvent.Status.PROCESSED
    assert Refund.objects.filter(inbound_event=processed, external_id="880000001").exists()
    failed = events["demo-shopify-refund-over-line"]
    assert failed.status == InboundEvent.Status.FAILED
    # The cause in words with formatted amounts, and that a replay cannot fix it.
    assert re.search(r"amount_refunded \d+\.\d\d USD .* exceeds price x quantity \(\d+\.\d\d USD\)", failed.outcome)
    assert "Replaying gives the same answer" in failed.outcome
    awaiting = events["demo-shopify-refund-unknown-order"]
    assert (awaiting.status, awaiting.order_id) == (InboundEvent.Status.AWAITING_ORDER, "5100999000123")

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.status == WebhookEndpoint.Status.ACTIVE
    deliveries = list(endpoint.deliveries.order_by("pk"))
    assert [d.status for d in deliveries] == [DeliveryStatus.SUCCEEDED] * 4 + [DeliveryStatus.CREATED] * 2
    assert all(d.attempts == 1 for d in deliveries)
    assert [d.last_status_code for d in deliveries] == [200] * 4 + [503, None]
    assert "Order service is down" in deliveries[4].last_reply_excerpt
    assert deliveries[5].last_error == "No answer within 10 s."
    assert all(d.next_attempt_at > d.last_attempt_at for d in deliveries[4:])  # retried later
    assert endpoint.last_success_at is not None and endpoint.last_failure_at is not None

    # Idempotent: run again on the same database, nothing new and nothing broken.
    counts = (Refund.objects.count(), InboundEvent.objects.count(), WebhookDelivery.objects.count())
    call_command("seed_demo", stdout=StringIO())
    assert (Refund.objects.count(), InboundEvent.objects.count(), WebhookDelivery.objects.count()) == counts
    assert WebhookEndpoint.objects.count() == 1

"""Stripe events as operators and the sandbox meet them: the in-process receiver, transient errors and
retries, the requeue sweep, replay (admin, confirmed; command), the endpoint admin."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.contrib.admin import helpers
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from payments.models import ShopperRefund
from refunds.models import RefundSource, RefundStatus
from refunds.services import refund_process, refund_record
from stripe_events import services
from stripe_events.models import StripeEvent, StripeWebhookEndpoint
from stripe_events.sandbox import sandbox_webhook_receive
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, SandboxRefund
from tests.factories import OperatorFactory, StripeEventFactory
from tests.stripe_events.events import refund_object, signature_header, stripe_event
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(OperatorFactory())
    return client


def signed(event: dict, secret: str) -> tuple[bytes, dict]:
    payload = json.dumps(event).encode()
    return payload, {"Stripe-Signature": signature_header(payload, secret), "Content-Type": "application/json"}


def pending_refund(bag):
    ledger.inject_fault(FaultKind.REFUND_FAILS_ASYNC, path="/v1/refunds")
    refund = refund_record(bag=bag, source=RefundSource.CHANNEL_API, actor="test", enqueue=False).refund
    refund_process(refund_id=refund.pk)
    return refund, ShopperRefund.objects.get(refund=refund)


def test_the_sandbox_receiver_ingests_through_the_same_path(settings):
    settings.STRIPE_SANDBOX_WEBHOOK_SECRET = "whsec_sandbox_test"
    bag = funded_bag()
    refund, shopper = pending_refund(bag)
    SandboxRefund.objects.filter(stripe_id=shopper.gateway_refund_id).update(
        status="succeeded", fails_on_next_read=False
    )
    event = stripe_event("refund.updated", refund_object(shopper.gateway_refund_id))
    payload, headers = signed(event, "whsec_sandbox_test")
    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = sandbox_webhook_receive(payload, headers)
    assert answer == {"status": "received", "event_id": event["id"]}
    stored = StripeEvent.objects.get(stripe_id=event["id"])
    assert stored.endpoint.is_sandbox and stored.status == StripeEvent.Status.PROCESSED
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED

    # The same delivery again is a duplicate; a body signed with another secret is refused, unstored.
    assert sandbox_webhook_receive(payload, headers)["status"] == "duplicate"
    forged, forged_headers = signed(stripe_event("refund.updated", {"id": "re_x"}), "whsec_other")
    with pytest.raises(services.SignatureInvalid):
        sandbox_webhook_receive(forged, forged_headers)
    assert StripeEvent.objects.count() == 1
    assert StripeWebhookEndpoint.objects.filter(is_sandbox=True).count() == 1


def test_the_default_receiver_setting_names_the_sandbox_receiver(settings):
    from django.utils.module_loading import import_string

    expected = "" if settings.STRIPE_API_KEY else "stripe_events.sandbox.sandbox_webhook_receive"
    assert expected == settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER
    if expected:
        assert import_string(settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER) is sandbox_webhook_receive


def test_a_transient_stripe_error_leaves_the_event_retrying_then_it_settles(settings):
    settings.STRIPE_SANDBOX_WEBHOOK_SECRET = "whsec_sandbox_test"
    bag = funded_bag()
    refund = refund_record(bag=bag, source=RefundSource.CHANNEL_API, actor="test", enqueue=False).refund
    refund_process(refund_id=refund.pk)
    shopper = ShopperRefund.objects.get(refund=refund)
    SandboxRefund.objects.filter(stripe_id=shopper.gateway_refund_id).update(
        status="failed", failure_reason="expired_or_canceled_card"
    )
    # Stripe is unreachable for every read the task and its in-process retries make.
    ledger.inject_fault(FaultKind.CONNECTION_ERROR, path="/v1/refunds/*", times=20)
    event = stripe_event("refund.failed", refund_object(shopper.gateway_refund_id))
    payload, headers = signed(event, "whsec_sandbox_test")
    with TestCase.captureOnCommitCallbacks(execute=True):
        sandbox_webhook_receive(payload, headers)
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEvent.Status.RETRYING
    assert stored.next_attempt_at is not None and stored.retries >= 1
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED  # nothing decided on an unknown answer

    # Stripe answers again; beat's requeue finds the overdue retry and it settles.
    ledger.clear_faults()
    StripeEvent.objects.filter(pk=stored.pk).update(next_attempt_at=timezone.now() - dt.timedelta(hours=1))
    assert services.stripe_events_requeue() == [stored.pk]
    stored.refresh_from_db()
    refund.refresh_from_db()
    assert stored.status == StripeEvent.Status.PROCESSED
    assert refund.status == RefundStatus.FAILED


def test_replay_from_the_admin_asks_for_confirmation_first(operator_client):
    event = StripeEventFactory(type="customer.created", object_id="cus_1")
    url = reverse("admin:stripe_events_stripeevent_changelist")
    data = {"action": "replay_selected_events", helpers.ACTION_CHECKBOX_NAME: [event.pk]}
    page = operator_client.post(url, data)
    assert page.status_code == 200
    assert "Replay 1 event(s)" in page.content.decode()
    event.refresh_from_db()
    assert (event.status, event.attempts) == (StripeEvent.Status.FAILED, 0)  # nothing yet

    done = operator_client.post(url, {**data, "confirm": "yes"}, follow=True)
    assert "Replayed 1 event(s): 1 IGNORED." in done.content.decode()
    event.refresh_from_db()
    assert (event.status, event.attempts) == (StripeEvent.Status.IGNORED, 1)


def test_replay_command_replays_failed_events_and_names_unknown_ones():
    event = StripeEventFactory(type="customer.created")
    out = StringIO()
    call_command("replay_stripe_events", "--failed", stdout=out)
    assert f"#{event.pk} customer.created {event.stripe_id} -> IGNORED" in out.getvalue()
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.IGNORED
    with pytest.raises(CommandError, match="evt_missing"):
        call_command("replay_stripe_events", "--stripe-ids", "evt_missing")


def test_creating_an_endpoint_shows_the_url_to_register_and_stores_the_secret_encrypted(operator_client):
    add_url = reverse("admin:stripe_events_stripewebhookendpoint_add")
    response = operator_client.post(
        add_url,
        {"name": "Live account", "enabled": "on", "tolerance_seconds": 300, "new_signing_secret": "whsec_live_1"},
        follow=True,
    )
    assert response.status_code == 200
    endpoint = StripeWebhookEndpoint.objects.get(name="Live account")
    path = reverse("stripe_events:webhook", args=[endpoint.public_id])
    body = response.content.decode()
    assert f"http://testserver{path}" in body and "charge.dispute.created" in body
    assert endpoint.secrets == ["whsec_live_1"]
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT signing_secrets FROM stripe_events_stripewebhookendpoint WHERE id = %s", [endpoint.pk])
        raw = cursor.fetchone()[0]
    assert "whsec_live_1" not in raw

    # Rolling the secret: the new one is added and both verify, until the old one is dropped.
    change_url = reverse("admin:stripe_events_stripewebhookendpoint_change", args=[endpoint.pk])
    operator_client.post(
        change_url,
        {"name": "Live account", "enabled": "on", "tolerance_seconds": 300, "new_signing_secret": "whsec_live_2"},
    )
    endpoint.refresh_from_db()
    assert endpoint.secrets == ["whsec_live_2", "whsec_live_1"]
    refused = operator_client.post(
        change_url, {"name": "Live account", "enabled": "on", "tolerance_seconds": 300, "new_signing_secret": "sk_oops"}
    )
    assert "starts with whsec_" in refused.content.decode()


def test_a_database_error_retries_with_backoff_until_the_horizon_then_fails(settings, monkeypatch):
    """The platform events' retry rules (violet_refunds.retrying) hold for Stripe events: a transient
    error is RETRYING with a backed-off next attempt and a growing streak; past the horizon, FAILED."""
    settings.INBOUND_EVENT_RETRY_HORIZON_SECONDS = 3600

    def terminated(event):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(services, "_dispatch", terminated)
    event = StripeEventFactory(type="customer.created", status=StripeEvent.Status.RECEIVED, outcome="")

    before = timezone.now()
    first = services.stripe_event_process(event.pk, only_if_due=True)
    assert first.retrying and (first.event.retries, first.event.claims_without_outcome) == (1, 0)
    assert first.event.next_attempt_at > before and first.event.retrying_since >= before
    assert "Transient error (failure 1 in a row): retrying automatically" in first.event.outcome
    assert first.event.error.startswith("OperationalError: terminating connection")
    # A copy of the message before the next attempt does nothing.
    assert services.stripe_event_process(event.pk, only_if_due=True).skipped.startswith("not due before")

    StripeEvent.objects.filter(pk=event.pk).update(retrying_since=timezone.now() - dt.timedelta(hours=2))
    last = services.stripe_event_process(event.pk)
    event.refresh_from_db()
    assert not last.retrying and event.status == StripeEvent.Status.FAILED
    assert "(2 failures in a row since" in event.outcome and "stopped at the retry horizon" in event.outcome
    assert (event.next_attempt_at, event.retrying_since, event.retries, event.attempts) == (None, None, 0, 2)

"""Replaying events (admin action and management command) and what the admin shows (and never shows)."""

import io

import pytest
import responses
from django.core.management import CommandError, call_command
from django.urls import reverse

from platforms.admin import InboundEventAdmin
from platforms.models import InboundEvent
from refunds.models import Refund
from tests.factories import OperatorFactory
from tests.platforms.conftest import ecwid_order_url
from tests.platforms.delivery import ECWID_CLIENT_SECRET, SHOPIFY_SECRET, deliver, fixture_json, wix_jwt

ORDER_URL = ecwid_order_url("1003", "K8XTQ")


@pytest.fixture
def failed_ecwid_event(ecwid_store):
    """An Ecwid cancellation whose processing failed: Ecwid refused our token."""
    with responses.RequestsMock() as mock:
        mock.get(ORDER_URL, status=401, json={"errorMessage": "Token is invalid"})
        deliver(ecwid_store, "webhook_order_updated_cancelled")
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.FAILED
    return event


@pytest.fixture
def operator_client(client, db):
    client.force_login(OperatorFactory())
    return client


def test_replay_action_is_listed_and_reprocesses_through_the_service(
    operator_client, failed_ecwid_event, django_capture_on_commit_callbacks
):
    assert "replay_selected_events" in InboundEventAdmin.actions
    url = reverse("admin:platforms_inboundevent_changelist")
    with responses.RequestsMock() as mock, django_capture_on_commit_callbacks(execute=True):
        mock.get(ORDER_URL, json=fixture_json("ecwid", "order_cancelled.json"))
        response = operator_client.post(
            url, {"action": "replay_selected_events", "_selected_action": [failed_ecwid_event.pk]}, follow=True
        )

    assert response.status_code == 200
    assert "Replayed 1 event(s): 1 PROCESSED." in response.content.decode()
    failed_ecwid_event.refresh_from_db()
    assert failed_ecwid_event.status == InboundEvent.Status.PROCESSED
    assert failed_ecwid_event.error == failed_ecwid_event.traceback == ""
    assert failed_ecwid_event.attempts == 2
    assert Refund.objects.get().inbound_event == failed_ecwid_event


def test_replay_of_a_processed_event_changes_nothing(
    operator_client, shopify_store, django_capture_on_commit_callbacks
):
    deliver(shopify_store, "refunds_create", event_id="r1")
    event = InboundEvent.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            reverse("admin:platforms_inboundevent_changelist"),
            {"action": "replay_selected_events", "_selected_action": [event.pk]},
        )

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSED
    assert "already recorded" in event.outcome
    assert Refund.objects.count() == 1


def test_replay_command_failed(failed_ecwid_event, django_capture_on_commit_callbacks):
    out = io.StringIO()
    with responses.RequestsMock() as mock, django_capture_on_commit_callbacks(execute=True):
        mock.get(ORDER_URL, json=fixture_json("ecwid", "order_cancelled.json"))
        call_command("replay_events", "--failed", stdout=out)

    assert f"#{failed_ecwid_event.pk} ECWID order.updated -> PROCESSED" in out.getvalue()
    assert "Replayed 1 event(s): 1 PROCESSED." in out.getvalue()
    assert Refund.objects.get().external_id == "cancel:K8XTQ"


def test_replay_command_ids(failed_ecwid_event, django_capture_on_commit_callbacks):
    out = io.StringIO()
    with responses.RequestsMock() as mock, django_capture_on_commit_callbacks(execute=True):
        mock.get(ORDER_URL, json=fixture_json("ecwid", "order_paid.json"))
        call_command("replay_events", "--ids", str(failed_ecwid_event.pk), stdout=out)

    failed_ecwid_event.refresh_from_db()
    assert failed_ecwid_event.status == InboundEvent.Status.IGNORED
    assert "1 IGNORED" in out.getvalue()
    assert not Refund.objects.exists()


def test_replay_command_options_are_mutually_exclusive_and_required(db):
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("replay_events", "--failed", "--ids", "1")
    with pytest.raises(CommandError, match="one of the arguments --failed --ids is required"):
        call_command("replay_events")


def test_replay_command_rejects_unknown_ids(db):
    with pytest.raises(CommandError, match="No inbound event with id 424242"):
        call_command("replay_events", "--ids", "424242")


def test_inbound_event_page_shows_the_payload_outcome_and_refunds(operator_client, shopify_store):
    deliver(shopify_store, "refunds_create", event_id="page")
    event = InboundEvent.objects.get()
    refund = Refund.objects.get()

    page = operator_client.get(reverse("admin:platforms_inboundevent_change", args=[event.pk])).content.decode()

    assert "&quot;order_id&quot;: 450789469" in page  # pretty-printed, escaped
    assert "Recorded refund" in page
    assert reverse("admin:refunds_refund_change", args=[refund.pk]) in page
    assert "48.20 USD" in page
    listing = operator_client.get(
        reverse("admin:platforms_inboundevent_changelist"), {"q": "page", "status__exact": "PROCESSED"}
    )
    assert listing.status_code == 200
    assert f"/{event.pk}/change/" in listing.content.decode()


def test_wix_event_page_shows_the_decoded_payload(operator_client, db, wix_keys):
    from platforms.models import Platform
    from tests.factories import InboundEventFactory, StoreConnectionFactory

    connection = StoreConnectionFactory(merchant__platform=Platform.WIX)
    event = InboundEventFactory(
        connection=connection,
        platform=Platform.WIX,
        topic="wix.ecom.v1.order/canceled",
        body=wix_jwt(fixture_json("wix", "order_canceled.json"), wix_keys[0]).decode(),
    )
    page = operator_client.get(reverse("admin:platforms_inboundevent_change", args=[event.pk])).content.decode()
    assert "2f7c8a9e-1b3d-4e5f-a6b7-c8d9e0f1a2b3" in page


def test_store_connection_pages_never_show_secrets(operator_client, shopify_store, ecwid_store):
    for url in (
        reverse("admin:platforms_storeconnection_changelist"),
        reverse("admin:platforms_storeconnection_change", args=[shopify_store.connection.pk]),
        reverse("admin:platforms_storeconnection_change", args=[ecwid_store.connection.pk]),
        reverse("admin:platforms_merchant_changelist"),
        reverse("admin:platforms_merchant_change", args=[shopify_store.merchant.pk]),
    ):
        page = operator_client.get(url).content.decode()
        for secret in (SHOPIFY_SECRET, ECWID_CLIENT_SECRET, "shpat_test", "secret_ecwidtoken"):
            assert secret not in page, (url, secret)
    page = operator_client.get(
        reverse("admin:platforms_storeconnection_change", args=[shopify_store.connection.pk])
    ).content.decode()
    assert "2 value(s) stored: access_token, shop_domain." in page
    assert str(shopify_store.connection.public_id) in page


def test_store_connection_secrets_can_be_replaced_but_empty_fields_keep_them(operator_client, shopify_store):
    connection = shopify_store.connection
    url = reverse("admin:platforms_storeconnection_change", args=[connection.pk])
    form = {"merchant": connection.merchant.pk, "status": "CONNECTED"}

    operator_client.post(url, {**form, "replace_webhook_secret": "", "replace_credentials": ""})
    connection.refresh_from_db()
    assert connection.webhook_secret == SHOPIFY_SECRET

    response = operator_client.post(
        url, {**form, "replace_webhook_secret": "new-secret", "replace_credentials": '{"access_token": "shpat_new"}'}
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.webhook_secret == "new-secret"
    assert connection.credentials == {"access_token": "shpat_new"}

    response = operator_client.post(url, {**form, "replace_credentials": "[1, 2]"})
    assert response.status_code == 200
    assert "Enter a JSON object whose values are strings." in response.content.decode()

"""Personal data's lifecycle (issue #22): least data at ingest, retention, uninstall and disconnect,
Shopify's compliance webhooks, erasure. Every test drives the real receiver, task, command or admin
and asserts the rows left behind."""

import datetime as dt
import hashlib
import importlib
import json

import responses
from axes.models import AccessAttempt
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.management import call_command
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.models import WebhookDelivery, WebhookEvent
from platforms.models import InboundEvent, Platform, PrivacyRequest, StoreConnection
from platforms.privacy.disconnect import store_connection_reconnect
from platforms.services import events_replay
from refunds.models import Order, Refund
from tests.factories import (
    InboundEventFactory,
    MerchantMembershipFactory,
    PrivacyRequestFactory,
    UserFactory,
    WebhookDeliveryFactory,
    WebhookEventFactory,
)
from tests.platforms.bigcommerce_store import ORDER_URL
from tests.platforms.conftest import make_store
from tests.platforms.delivery import (
    SHOPIFY_SECRET,
    deliver,
    fixture_text,
    post_webhook,
    wix_key_pair,
)
from tests.portal.conftest import logged_in, portal_user
from tests.refunds.admin.helpers import OPERATORS, VIEWERS, staff_in

SHOPPER = "bob.norman@example.com"
OLD = timezone.now() - dt.timedelta(days=45)


def _email_rows() -> dict[str, int]:
    """Every table's rows whose text (any column) contains the shopper's e-mail."""
    found = {}
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cursor.fetchall():
            # The table names come from the catalogue, not from input.
            query = f'SELECT count(*) FROM "{table}" AS r WHERE r::text ILIKE %s'  # noqa: S608
            cursor.execute(query, [f"%{SHOPPER}%"])
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


# --- least data at ingest ------------------------------------------------------------------------


def test_headers_keep_only_the_platforms_allow_list(shopify_store):
    delivery = deliver(
        shopify_store,
        "refunds_create",
        event_id="wh-headers",
        headers={
            "X-Api-Key": "key-123",
            "Proxy-Authorization": "Basic abc",
            "Cookie": "sessionid=x",
            "Authorization": "Bearer y",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    event = delivery.event
    assert event.status == InboundEvent.Status.PROCESSED
    assert set(event.headers) == {
        "Content-Type",
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-Api-Version",
        "X-Shopify-Webhook-Id",
        "X-Shopify-Event-Id",
        "X-Shopify-Triggered-At",
    }
    assert event.headers["X-Shopify-Webhook-Id"] == "wh-headers"
    assert "X-Shopify-Hmac-Sha256" not in json.dumps(event.headers)


def test_capability_fields_are_stripped_and_the_body_hash_kept(shopify_store):
    # A cancellation of an order that is not (yet) a bag awaits it: its body is kept for processing.
    order = json.loads(fixture_text("shopify", "orders_cancelled_with_refund.json"))
    order.update(
        id=777000111,
        token="b1946ac92492d2347c6235b4d2611184",
        order_status_url="https://blue-mug.example/1/orders/b1946ac9/authenticate?key=c3f1a2b9e8",
        checkout_token="bd5a8aa1ecd019dd3520ff791ee3a24c",
    )
    raw = json.dumps(order).encode()
    delivery = deliver(shopify_store, body=raw, topic="orders/cancelled", event_id="wh-cap")
    event = delivery.event
    assert event.status == InboundEvent.Status.AWAITING_ORDER
    stored = json.loads(event.body)
    assert stored["token"] == stored["order_status_url"] == stored["checkout_token"] == "[redacted]"
    assert "c3f1a2b9e8" not in event.body and "b1946ac92492d2347c6235b4d2611184" not in event.body
    assert stored["total_price"] == order["total_price"] and stored["refunds"] == order["refunds"]
    assert event.body_sha256 == hashlib.sha256(raw).hexdigest()


def test_an_event_of_an_order_not_on_the_network_keeps_no_raw_body(shopify_store):
    order = json.loads(fixture_text("shopify", "orders_cancelled_without_refund.json"))
    order.update(id=888000222, cancelled_at=None, cancel_reason=None)
    raw = json.dumps(order).encode()
    event = deliver(shopify_store, body=raw, topic="orders/updated", event_id="wh-foreign").event
    assert event.status == InboundEvent.Status.IGNORED
    assert event.body == "" and event.headers == {} and event.remote_ip is None
    assert event.redacted_at is not None
    assert event.body_sha256 == hashlib.sha256(raw).hexdigest()
    assert (event.event_id, event.topic) == ("wh-foreign", "orders/updated")
    assert "888000222 is not a known order" in event.outcome
    assert SHOPPER not in json.dumps(list(InboundEvent.objects.values()), default=str)


def test_raw_payloads_are_for_operators_not_viewers(shopify_store):
    order = json.loads(fixture_text("shopify", "orders_cancelled_with_refund.json"))
    order["id"] = 777000333
    event = deliver(shopify_store, body=json.dumps(order).encode(), topic="orders/cancelled", event_id="wh-p").event
    url = reverse("admin:platforms_inboundevent_change", args=[event.pk])
    viewer, operator = Client(), Client()
    viewer.force_login(staff_in(VIEWERS, "viewer"))
    operator.force_login(staff_in(OPERATORS, "operator"))
    seen_by_viewer = viewer.get(url)
    assert seen_by_viewer.status_code == 200
    assert SHOPPER not in seen_by_viewer.content.decode() and "Raw body" not in seen_by_viewer.content.decode()
    seen_by_operator = operator.get(url)
    assert seen_by_operator.status_code == 200 and SHOPPER in seen_by_operator.content.decode()


# --- retention -----------------------------------------------------------------------------------


def test_retention_redacts_old_payloads_and_keeps_the_money(shopify_store):
    processed = deliver(shopify_store, "refunds_create", event_id="wh-old").event
    refund = Refund.objects.get(inbound_event=processed)
    amount, parts = refund.amount, (refund.sub_total_amount, refund.shipping_amount, refund.tax_amount)
    order = json.loads(fixture_text("shopify", "orders_cancelled_with_refund.json"))
    order["id"] = 777000444
    waiting = deliver(shopify_store, body=json.dumps(order).encode(), topic="orders/cancelled", event_id="wh-w").event
    assert waiting.status == InboundEvent.Status.AWAITING_ORDER
    outbound = WebhookDeliveryFactory(
        event=WebhookEventFactory(bag=shopify_store.bag, sequence=1000), last_reply_excerpt="oops"
    )
    InboundEvent.objects.update(date_created=OLD)
    WebhookEvent.objects.filter(pk=outbound.event_id).update(date_created=OLD)
    WebhookDelivery.objects.filter(pk=outbound.pk).update(date_last_modified=OLD)
    AccessAttempt.objects.create(username="x", ip_address="203.0.113.1", user_agent="ua", failures_since_start=1)
    AccessAttempt.objects.update(attempt_time=timezone.now() - dt.timedelta(days=100))
    Session.objects.create(session_key="s" * 32, session_data="", expire_date=timezone.now() - dt.timedelta(days=1))
    export = PrivacyRequestFactory(state=PrivacyRequest.State.DONE, completed_at=OLD, export={"orders": [SHOPPER]})

    call_command("apply_retention", "--dry-run", stdout=(dry := _Out()))
    assert "inbound events redacted: 1" in dry.text and "delivery replies cleared: 1" in dry.text
    assert InboundEvent.objects.get(pk=processed.pk).body != ""  # a dry run changes nothing

    call_command("apply_retention", "--batch-size", "1", stdout=_Out())
    processed.refresh_from_db()
    assert processed.body == "" and processed.headers == {} and processed.redacted_at is not None
    assert processed.status == InboundEvent.Status.PROCESSED and processed.body_sha256 and processed.outcome
    assert InboundEvent.objects.get(pk=waiting.pk).body != ""  # still needed: kept until it settles
    assert WebhookEvent.objects.get(pk=outbound.event_id).body == ""
    assert WebhookDelivery.objects.get(pk=outbound.pk).last_reply_excerpt == ""
    assert not AccessAttempt.objects.exists() and not Session.objects.exists()
    export.refresh_from_db()
    assert export.export is None and export.state == PrivacyRequest.State.DONE
    refund.refresh_from_db()
    assert refund.inbound_event_id == processed.pk
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (amount, *parts)

    call_command("apply_retention", stdout=(again := _Out()))
    assert "inbound events redacted: 0" in again.text  # idempotent
    assert events_replay([processed]) == {InboundEvent.Status.PROCESSED: 1}  # skipped: nothing to process


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, value):
        self.text += value

    def flush(self):
        pass


# --- Shopify compliance webhooks -----------------------------------------------------------------


def _with_shopper(store):
    store.bag.order.customer_email = SHOPPER
    store.bag.order.save(update_fields=["customer_email"])
    MerchantMembershipFactory(merchant=store.merchant, user=UserFactory(email="owner@blue-mug.example"))


def test_customers_redact_erases_the_shopper_everywhere(shopify_store):
    _with_shopper(shopify_store)
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="wh-order")
    assert _email_rows()  # the order and the stored payload name the shopper
    delivery = deliver(shopify_store, "customers_redact", event_id="wh-redact")
    assert delivery.response.status_code == 200 and delivery.response.json()["status"] == "received"
    request = PrivacyRequest.objects.get()
    assert (request.kind, request.state) == (PrivacyRequest.Kind.CUSTOMER_REDACT, PrivacyRequest.State.DONE)
    assert request.customer_external_id == "191167" and request.order_ids == ["450789469", "450789470"]
    assert request.email_sha256 == hashlib.sha256(SHOPPER.encode()).hexdigest() and request.subject_email == ""
    assert round((request.due_at - request.date_created).total_seconds() / 86400) == 30  # Shopify's deadline
    assert _email_rows() == {}
    assert Order.objects.get(pk=shopify_store.bag.order_id).customer_email == ""
    assert Refund.objects.filter(bag=shopify_store.bag).exists()  # the money records stay
    assert not InboundEvent.objects.filter(topic="customers/redact").exists()  # the request is not stored raw
    again = deliver(shopify_store, "customers_redact", event_id="wh-redact")
    assert again.response.json()["status"] == "duplicate" and PrivacyRequest.objects.count() == 1


def test_a_compliance_webhook_with_a_bad_hmac_is_401(shopify_store):
    response = post_webhook(shopify_store, "customers_redact", event_id="wh-bad", secret="not-the-secret")
    assert response.status_code == 401
    assert not PrivacyRequest.objects.exists()


def test_customers_data_request_assembles_what_we_hold_for_the_merchant(shopify_store):
    _with_shopper(shopify_store)
    deliver(shopify_store, "refunds_create", event_id="wh-refund")
    deliver(shopify_store, "customers_data_request", event_id="wh-data")
    request = PrivacyRequest.objects.get()
    assert request.state == PrivacyRequest.State.DONE
    assert [o["customer_email"] for o in request.export["orders"]] == [SHOPPER]
    assert request.export["orders"][0]["platform_order_id"] == "450789469"
    assert [r["amount_minor_units"] for r in request.export["refunds"]] == [
        Refund.objects.get(bag=shopify_store.bag).amount
    ]
    assert [m.to for m in mail.outbox] == [["owner@blue-mug.example"]] and SHOPPER not in mail.outbox[0].body


def test_shop_redact_erases_the_shops_customer_data_and_credentials(shopify_store):
    _with_shopper(shopify_store)
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="wh-order")
    deliver(shopify_store, "shop_redact", event_id="wh-shop")
    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    assert connection.status == StoreConnection.Status.DISCONNECTED
    assert connection.credentials is None and connection.webhook_secret == ""
    assert _email_rows() == {}
    assert PrivacyRequest.objects.get().state == PrivacyRequest.State.DONE


def test_shop_redact_after_uninstall_is_verified_with_the_app_secret(shopify_store, settings):
    settings.SHOPIFY_APP_SECRETS = [SHOPIFY_SECRET]
    _with_shopper(shopify_store)
    deliver(shopify_store, "app_uninstalled", event_id="wh-uninstall")
    # 48 hours later, on the app-level URL: routed by the shop domain to the disconnected connection.
    url = reverse("platforms:app_webhook", kwargs={"platform": "shopify"})
    delivery = deliver(shopify_store, "shop_redact", event_id="wh-shop-later", secret=SHOPIFY_SECRET, url=url)
    assert delivery.response.json()["status"] == "received"
    request = PrivacyRequest.objects.get()
    assert request.merchant == shopify_store.merchant and request.state == PrivacyRequest.State.DONE
    assert _email_rows() == {}


# --- uninstall and disconnect --------------------------------------------------------------------


def _assert_disconnected_and_refusing(store, later_fixture, **later):
    connection = StoreConnection.objects.get(pk=store.connection.pk)
    assert connection.status == StoreConnection.Status.DISCONNECTED
    assert connection.credentials is None and connection.webhook_secret == ""
    assert connection.disconnected_at is not None
    assert not InboundEvent.objects.exists()
    # The platform keeps sending, signed with the old secret: refused, nothing stored.
    response = post_webhook(store, later_fixture, **later)
    assert response.status_code == 410 and response.json()["error_code"] == "connection_disconnected"
    assert not InboundEvent.objects.exists()


def test_shopify_app_uninstalled_disconnects(shopify_store):
    response = post_webhook(shopify_store, "app_uninstalled", event_id="wh-u")
    assert response.status_code == 200 and response.json()["status"] == "disconnected"
    _assert_disconnected_and_refusing(shopify_store, "refunds_create", event_id="wh-after")


def test_bigcommerce_app_uninstalled_disconnects(bc_store):
    assert post_webhook(bc_store, "webhook_app_uninstalled").status_code == 200
    _assert_disconnected_and_refusing(bc_store, "webhook_status_updated_cancelled")


def test_ecwid_application_uninstalled_disconnects(ecwid_store):
    assert post_webhook(ecwid_store, "webhook_application_uninstalled").status_code == 200
    _assert_disconnected_and_refusing(ecwid_store, "webhook_order_updated_cancelled")


WIX_INSTANCE = "1b5ec6a4-8b3e-4d4a-9c6e-2f0a7c1e9d11"  # the captured fixtures' instanceId


def _wix_site(settings):
    settings.WIX_APP_PUBLIC_KEYS = [wix_key_pair()[1]]
    return make_store(
        Platform.WIX,
        order_id="2f7c8a9e-1b3d-4e5f-a6b7-c8d9e0f1a2b3",  # the order_canceled fixture's order
        line_ids=("a", "b"),
        credentials={"api_key": "IST.k", "account_id": "a", "site_id": "s", "instance_id": WIX_INSTANCE},
    )


def test_wix_app_instance_removed_disconnects(db, settings):
    store = _wix_site(settings)
    instance = WIX_INSTANCE
    removed = {
        "eventType": "AppInstanceRemoved",
        "instanceId": instance,
        "data": {"appId": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"},
        "identity": {"identityType": "WIX_USER", "wixUserId": "0a1b2c3d"},
    }
    url = reverse("platforms:app_webhook", kwargs={"platform": "wix"})
    response = post_webhook(store, removed, url=url)
    assert response.status_code == 200 and response.json()["status"] == "disconnected"
    connection = StoreConnection.objects.get(pk=store.connection.pk)
    assert connection.status == StoreConnection.Status.DISCONNECTED and connection.credentials is None
    assert not InboundEvent.objects.exists()
    # A later order event for the instance (app-level URL) is refused with nothing stored.
    later = post_webhook(store, "order_canceled", url=url)
    assert later.status_code == 410 and not InboundEvent.objects.exists()


def test_operator_disconnect_asks_first_then_wipes_and_logs(shopify_store):
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:platforms_storeconnection_changelist")
    data = {"action": "disconnect_selected", "_selected_action": [shopify_store.connection.pk]}
    confirm = admin.post(url, data)
    assert confirm.status_code == 200 and b"Yes, disconnect" in confirm.content
    assert StoreConnection.objects.get(pk=shopify_store.connection.pk).status != StoreConnection.Status.DISCONNECTED
    assert admin.post(url, {**data, "confirm": "yes"}).status_code == 302
    entry = LogEntry.objects.get(object_id=str(shopify_store.connection.pk))
    assert "credentials and webhook secret wiped" in entry.get_change_message()
    _assert_disconnected_and_refusing(shopify_store, "refunds_create", event_id="wh-after")


def test_reconnecting_issues_a_fresh_secret(shopify_store):
    post_webhook(shopify_store, "app_uninstalled", event_id="wh-u")
    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    store_connection_reconnect(connection=connection)
    connection.refresh_from_db()
    assert connection.status == StoreConnection.Status.CONNECTED
    assert connection.webhook_secret and connection.webhook_secret != SHOPIFY_SECRET


@responses.activate
def test_a_401_from_the_platform_marks_the_connection_invalid_and_tells_the_merchant(bc_store):
    MerchantMembershipFactory(merchant=bc_store.merchant, user=UserFactory(email="owner@bc.example"))
    responses.get(ORDER_URL, status=401, json={"status": 401, "title": "Unauthorized"})
    event = deliver(bc_store, "webhook_status_updated_cancelled").event
    assert event.status == InboundEvent.Status.FAILED
    connection = StoreConnection.objects.get(pk=bc_store.connection.pk)
    assert connection.status == StoreConnection.Status.INVALID and "401" in connection.last_error
    assert [m.to for m in mail.outbox] == [["owner@bc.example"]]


# --- erasure -------------------------------------------------------------------------------------


def test_erase_shopper_command_redacts_and_keeps_the_money(shopify_store):
    _with_shopper(shopify_store)
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="wh-order")
    refund = Refund.objects.get(bag=shopify_store.bag)
    call_command("erase_shopper", "--email", SHOPPER.upper(), "--operator", "alice", stdout=_Out())
    assert _email_rows() == {}
    request = PrivacyRequest.objects.get()
    assert (request.kind, request.requested_by) == (PrivacyRequest.Kind.ERASURE, "operator:alice")
    assert request.order_ids == [str(shopify_store.bag.order_id)]
    assert Refund.objects.get(pk=refund.pk).amount == refund.amount


def test_erasure_admin_form_is_audited(shopify_store):
    _with_shopper(shopify_store)
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = admin.post(
        reverse("admin:platforms_privacyrequest_add"), {"email": "", "orders": str(shopify_store.bag.order_id)}
    )
    assert response.status_code == 302
    assert Order.objects.get(pk=shopify_store.bag.order_id).customer_email == ""
    request = PrivacyRequest.objects.get()
    assert request.kind == PrivacyRequest.Kind.ERASURE and request.requested_by == "operator:root"
    assert LogEntry.objects.filter(object_id=str(request.pk)).exists()


# --- the merchant's portal -----------------------------------------------------------------------


def test_merchant_disconnects_from_the_portal_after_confirming(shopify_store):
    owner = logged_in(portal_user(shopify_store.merchant, email="owner@blue-mug.example"))
    url = reverse("portal:connection_disconnect", args=[shopify_store.merchant.pk])
    assert url.encode() in owner.get(reverse("portal:home")).content
    confirm = owner.get(url)
    assert confirm.status_code == 200 and b"Disconnect the store" in confirm.content
    assert owner.post(url, {}).status_code == 200  # not confirmed: nothing happens
    assert StoreConnection.objects.get(pk=shopify_store.connection.pk).status == StoreConnection.Status.CONNECTED
    assert owner.post(url, {"confirm": "yes"}).status_code == 302
    stranger = logged_in(portal_user())
    assert stranger.post(url, {"confirm": "yes"}).status_code == 404
    _assert_disconnected_and_refusing(shopify_store, "refunds_create", event_id="wh-after")
    assert StoreConnection.objects.get(pk=shopify_store.connection.pk).disconnect_reason.startswith(
        "disconnected in the portal (merchant:"
    )


def test_merchant_downloads_a_customer_data_request(shopify_store):
    _with_shopper(shopify_store)
    deliver(shopify_store, "customers_data_request", event_id="wh-data")
    request = PrivacyRequest.objects.get()
    owner = logged_in(portal_user(shopify_store.merchant))
    listing = owner.get(reverse("portal:privacy_requests"))
    download_url = reverse("portal:privacy_request_download", args=[request.pk])
    assert download_url.encode() in listing.content
    download = owner.get(download_url)
    assert download["Content-Disposition"] == f'attachment; filename="data-request-{request.pk}.json"'
    assert json.loads(download.content)["orders"][0]["customer_email"] == SHOPPER
    assert logged_in(portal_user()).get(download_url).status_code == 404


def test_a_wix_event_of_an_anonymize_request_erases_the_order_and_stores_nothing(db, settings):
    store = _wix_site(settings)
    _with_shopper(store)
    url = reverse("platforms:app_webhook", kwargs={"platform": "wix"})
    response = post_webhook(store, "order_canceled", changes={"data.triggeredByAnonymizeRequest": True}, url=url)
    assert response.status_code == 200 and response.json()["status"] == "erased"
    assert Order.objects.get(pk=store.bag.order_id).customer_email == ""
    assert not InboundEvent.objects.exists()
    request = PrivacyRequest.objects.get()
    assert (request.kind, request.requested_by) == (PrivacyRequest.Kind.ERASURE, "platform:wix")
    assert request.order_ids == [store.bag.external_id]


def test_setting_disconnected_in_the_admin_goes_through_the_disconnect_service(shopify_store):
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:platforms_storeconnection_change", args=[shopify_store.connection.pk])
    form = {"merchant": shopify_store.merchant.pk, "status": StoreConnection.Status.DISCONNECTED}
    assert admin.post(url, {**form, "replace_webhook_secret": "", "replace_credentials": ""}).status_code == 302
    _assert_disconnected_and_refusing(shopify_store, "refunds_create", event_id="wh-after")
    # Back to CONNECTED in the admin: a fresh secret, not the old one.
    form["status"] = StoreConnection.Status.CONNECTED
    assert admin.post(url, {**form, "replace_webhook_secret": "", "replace_credentials": ""}).status_code == 302
    connection = StoreConnection.objects.get(pk=shopify_store.connection.pk)
    assert connection.status == StoreConnection.Status.CONNECTED
    assert connection.webhook_secret and connection.webhook_secret != SHOPIFY_SECRET


def test_an_event_stored_just_before_a_disconnect_is_ignored_without_its_body(shopify_store):
    order = json.loads(fixture_text("shopify", "orders_cancelled_with_refund.json"))
    raw = json.dumps(order).encode()
    with_stale_cache = post_webhook(shopify_store, body=raw, topic="orders/cancelled", event_id="wh-race")
    assert with_stale_cache.status_code == 200  # stored; its processing message not run yet
    StoreConnection.objects.filter(pk=shopify_store.connection.pk).update(status=StoreConnection.Status.DISCONNECTED)
    event = InboundEvent.objects.get(event_id="wh-race")
    assert events_replay([event]) == {InboundEvent.Status.IGNORED: 1}
    event.refresh_from_db()
    assert event.body == "" and "disconnected" in event.outcome
    assert not Refund.objects.filter(bag=shopify_store.bag).exists()


def test_the_migration_strips_signature_and_auth_headers_from_events_stored_before(db):
    from django.apps import apps

    migration = importlib.import_module("platforms.migrations.0009_privacy_permissions_and_shopify_routing")
    legacy = {
        "X-Shopify-Topic": "refunds/create",
        "X-Shopify-Hmac-Sha256": "abc=",
        "X-Wc-Webhook-Signature": "def=",
        "X-Api-Key": "k",
        "Proxy-Authorization": "Basic x",
        "Content-Type": "application/json",
    }
    event = InboundEventFactory(headers=legacy)
    migration.strip_secret_headers(apps)
    event.refresh_from_db()
    assert event.headers == {"X-Shopify-Topic": "refunds/create", "Content-Type": "application/json"}


def test_reconnecting_a_disconnected_wix_store_from_the_portal_issues_a_fresh_secret(db):
    from tests.portal.conftest import (
        WIX_ACCOUNT_ID,
        WIX_API_KEY,
        WIX_PROPERTIES_URL,
        WIX_SITE_ID,
        WIX_SITES_URL,
        wix_properties_body,
        wix_sites_body,
    )

    store = make_store(Platform.WIX, order_id="w-1", line_ids=("a", "b"), webhook_secret="the-old-secret")
    owner = logged_in(portal_user(store.merchant))
    owner.post(reverse("portal:connection_disconnect", args=[store.merchant.pk]), {"confirm": "yes"})
    assert StoreConnection.objects.get(pk=store.connection.pk).webhook_secret == ""
    credentials = {"api_key": WIX_API_KEY, "account_id": WIX_ACCOUNT_ID, "site_id": WIX_SITE_ID}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(WIX_SITES_URL, json=wix_sites_body())
        mock.get(WIX_PROPERTIES_URL, json=wix_properties_body())
        response = owner.post(reverse("portal:connect_wix"), {"merchant": store.merchant.pk, **credentials})
    assert response.status_code == 302
    connection = StoreConnection.objects.get(pk=store.connection.pk)
    assert connection.status == StoreConnection.Status.CONNECTED and connection.disconnected_at is None
    assert connection.credentials["api_key"] == WIX_API_KEY
    assert connection.webhook_secret and connection.webhook_secret != "the-old-secret"


def test_the_daily_task_applies_retention_and_does_requests_whose_message_was_lost(shopify_store):
    from platforms.tasks import apply_data_retention

    _with_shopper(shopify_store)
    deliver(shopify_store, "refunds_create", event_id="wh-daily")
    InboundEvent.objects.update(date_created=OLD)
    lost = PrivacyRequestFactory(merchant=shopify_store.merchant, subject_email=SHOPPER, order_ids=["450789469"])
    summary = apply_data_retention.apply().get()
    assert "inbound events redacted 1" in summary
    assert InboundEvent.objects.get(event_id="wh-daily").body == ""
    lost.refresh_from_db()
    assert lost.state == PrivacyRequest.State.DONE and lost.subject_email == ""
    assert Order.objects.get(pk=shopify_store.bag.order_id).customer_email == ""

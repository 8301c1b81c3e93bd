"""Webhook subscriptions (issue #24): created at connect, verified and repaired by the sync, a 401
marks the connection INVALID, a silent store shows in the triage and is read first by the parity check."""

import json
from datetime import timedelta

import pytest
import responses
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from platforms import selectors, services
from platforms.models import Platform, StoreConnection, WebhookSubscription
from platforms.subscriptions.services import subscriptions_sync, subscriptions_sync_due, webhook_address
from tests.factories import (
    BagFactory,
    MerchantFactory,
    MerchantMembershipFactory,
    OperatorFactory,
    StoreConnectionFactory,
    UserFactory,
)
from tests.platforms.subscription_fakes import (
    BC_STORE_HASH,
    SHOP_DOMAIN,
    WOO_STORE,
    FakeBigCommerce,
    FakeShopify,
    FakeWooCommerce,
)

BASE = "https://refunds.example.com"
SECRET = "whsec-rotating-secret-A1b2C3"
State = WebhookSubscription.State

CREDENTIALS = {
    Platform.SHOPIFY: {"shop_domain": SHOP_DOMAIN, "access_token": "shpat_test"},
    Platform.BIGCOMMERCE: {"store_hash": BC_STORE_HASH, "access_token": "bc-api-token-test"},
    Platform.WOOCOMMERCE: {"store_url": WOO_STORE, "consumer_key": "ck_test", "consumer_secret": "cs_test"},
}


@pytest.fixture(autouse=True)
def _base_url(settings):
    settings.PLATFORM_WEBHOOK_BASE_URL = BASE


@pytest.fixture
def operator_client(client, db):
    client.force_login(OperatorFactory())
    return client


def fake_for(platform):
    fake = {Platform.SHOPIFY: FakeShopify, Platform.BIGCOMMERCE: FakeBigCommerce, Platform.WOOCOMMERCE: FakeWooCommerce}
    return fake[platform]()


def connection_for(platform, **kwargs) -> StoreConnection:
    merchant = MerchantFactory(platform=platform)
    return StoreConnectionFactory(merchant=merchant, credentials=CREDENTIALS[platform], webhook_secret=SECRET, **kwargs)


def expected_address(connection) -> str:
    return f"{BASE}/webhooks/{connection.merchant.platform.lower()}/{connection.public_id}"


def connect_in_admin(operator_client, platform, django_capture_on_commit_callbacks) -> StoreConnection:
    merchant = MerchantFactory(platform=platform)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("admin:platforms_storeconnection_add"),
            {
                "merchant": merchant.pk,
                "status": "CONNECTED",
                "replace_credentials": json.dumps(CREDENTIALS[platform]),
                "replace_webhook_secret": SECRET,
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    return StoreConnection.objects.select_related("merchant").get(merchant=merchant)


def rows(connection) -> dict[str, WebhookSubscription]:
    return {row.topic: row for row in WebhookSubscription.objects.filter(connection=connection)}


# --- connecting creates exactly the declared subscriptions; a second sync writes nothing ---------


def test_connecting_a_shopify_store_creates_its_subscriptions(operator_client, django_capture_on_commit_callbacks):
    fake = FakeShopify()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        connection = connect_in_admin(operator_client, Platform.SHOPIFY, django_capture_on_commit_callbacks)
        address = expected_address(connection)
        assert [call.body for call in fake.writes] == [
            {"topic": topic, "webhookSubscription": {"callbackUrl": address, "format": "JSON"}}
            for topic in ("REFUNDS_CREATE", "ORDERS_CANCELLED", "APP_UNINSTALLED")
        ]
        recorded = rows(connection)
        assert set(recorded) == {"refunds/create", "orders/cancelled", "app/uninstalled"}
        assert {row.state for row in recorded.values()} == {State.ACTIVE}
        assert {row.address for row in recorded.values()} == {address}
        assert {row.platform_id for row in recorded.values()} == set(fake.items)
        assert all(row.last_verified_at for row in recorded.values())

        writes_before = len(fake.writes)
        result = subscriptions_sync(connection)
        assert result.writes == 0 and not result.errors
        assert sorted(result.verified) == sorted(recorded)
        assert len(fake.writes) == writes_before


def test_connecting_a_bigcommerce_store_creates_its_hooks(operator_client, django_capture_on_commit_callbacks):
    fake = FakeBigCommerce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        connection = connect_in_admin(operator_client, Platform.BIGCOMMERCE, django_capture_on_commit_callbacks)
        address = expected_address(connection)
        assert [(call.method, call.body) for call in fake.writes] == [
            (
                "POST",
                {
                    "scope": scope,
                    "destination": address,
                    "is_active": True,
                    "headers": {"Authorization": f"Bearer {SECRET}"},
                },
            )
            for scope in ("store/order/refund/created", "store/order/statusUpdated", "store/app/uninstalled")
        ]
        assert {row.state for row in rows(connection).values()} == {State.ACTIVE}

        writes_before = len(fake.writes)
        assert subscriptions_sync(connection).writes == 0
        assert len(fake.writes) == writes_before


def test_connecting_a_woocommerce_store_creates_its_webhook(operator_client, django_capture_on_commit_callbacks):
    fake = FakeWooCommerce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        connection = connect_in_admin(operator_client, Platform.WOOCOMMERCE, django_capture_on_commit_callbacks)
        assert [(call.method, call.body) for call in fake.writes] == [
            (
                "POST",
                {
                    "name": "Violet refunds: order.updated",
                    "topic": "order.updated",
                    "delivery_url": expected_address(connection),
                    "secret": SECRET,
                    "status": "active",
                },
            )
        ]
        assert rows(connection)["order.updated"].state == State.ACTIVE

        writes_before = len(fake.writes)
        assert subscriptions_sync(connection).writes == 0
        assert len(fake.writes) == writes_before


# --- repairs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["disabled", "paused"])
def test_a_woocommerce_webhook_found_disabled_is_reactivated(db, status):
    connection = connection_for(Platform.WOOCOMMERCE)
    fake = FakeWooCommerce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        subscriptions_sync(connection)
        (webhook_id,) = fake.items
        # Five failed deliveries later WooCommerce disabled it, silently.
        fake.items[webhook_id]["status"] = status

        result = subscriptions_sync(connection)

    assert [(call.method, call.body) for call in fake.writes[1:]] == [
        ("PUT", {"id": webhook_id, "delivery_url": expected_address(connection), "secret": SECRET, "status": "active"})
    ]
    assert fake.items[webhook_id]["status"] == "active"
    assert result.updated == ["order.updated (was not active)"]
    assert rows(connection)["order.updated"].state == State.ACTIVE


def test_a_missing_shopify_subscription_is_recreated_and_one_pointing_elsewhere_corrected(db):
    connection = connection_for(Platform.SHOPIFY)
    fake = FakeShopify()
    # Another app's subscription, and one of the merchant's own for a topic we need: never touched.
    foreign = fake.add("REFUNDS_CREATE", "https://erp.example.org/shopify/refunds")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        subscriptions_sync(connection)
        recorded = rows(connection)
        fake.items.pop(recorded["refunds/create"].platform_id)  # Shopify removed it (deliveries kept failing)
        moved = recorded["orders/cancelled"].platform_id
        fake.items[moved]["endpoint"]["callbackUrl"] = "https://old-host.example.com/somewhere-else"
        del fake.calls[:]

        result = subscriptions_sync(connection)

    address = expected_address(connection)
    assert [(call.operation, call.body) for call in fake.writes] == [
        ("create", {"topic": "REFUNDS_CREATE", "webhookSubscription": {"callbackUrl": address, "format": "JSON"}}),
        ("update", {"id": moved, "webhookSubscription": {"callbackUrl": address}}),
    ]
    assert result.created == ["refunds/create"]
    assert result.updated == ["orders/cancelled (address was https://old-host.example.com/somewhere-else)"]
    assert fake.items[foreign]["endpoint"]["callbackUrl"] == "https://erp.example.org/shopify/refunds"
    assert fake.items[moved]["endpoint"]["callbackUrl"] == address
    recorded = rows(connection)
    assert recorded["refunds/create"].platform_id in fake.items
    assert {row.state for row in recorded.values()} == {State.ACTIVE}


def test_our_duplicates_and_topics_no_longer_needed_are_deleted(db):
    connection = connection_for(Platform.BIGCOMMERCE)
    fake = FakeBigCommerce()
    address = expected_address(connection)
    duplicate = fake.add("store/order/refund/created", address)
    stale = fake.add("store/order/created", address)  # ours (our URL), a topic we no longer need
    foreign = fake.add("store/order/created", "https://someone-else.example.com/hooks")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        subscriptions_sync(connection)
        subscriptions_sync(connection)  # and nothing more the second time
    deleted = [call.body["id"] for call in fake.writes if call.operation == "delete"]
    assert deleted == [stale]
    assert duplicate in fake.items and foreign in fake.items
    assert sorted(hook["scope"] for hook in fake.items.values() if hook["destination"] == address) == [
        "store/app/uninstalled",
        "store/order/refund/created",
        "store/order/statusUpdated",
    ]


def test_a_rotated_secret_is_registered_again(db, django_capture_on_commit_callbacks):
    connection = connection_for(Platform.BIGCOMMERCE)
    fake = FakeBigCommerce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        subscriptions_sync(connection)
        del fake.calls[:]
        with django_capture_on_commit_callbacks(execute=True):
            services.store_connection_replace_secrets(connection=connection, webhook_secret="the-new-secret")
    assert {call.operation for call in fake.writes} == {"update"}
    assert len(fake.writes) == 3
    assert {json.dumps(hook["headers"]) for hook in fake.items.values()} == {
        json.dumps({"Authorization": "Bearer the-new-secret"})
    }


# --- credentials refused --------------------------------------------------------------------------


def test_a_401_marks_the_connection_invalid_and_tells_the_merchant_once(db, operator_client):
    connection = connection_for(Platform.WOOCOMMERCE)
    owner = UserFactory(email="owner@merchant.example")
    MerchantMembershipFactory(merchant=connection.merchant, user=owner)
    fake = FakeWooCommerce(fail_status=401)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        result = subscriptions_sync(connection)
        subscriptions_sync(connection)

    assert result.authentication_failed
    connection.refresh_from_db()
    assert connection.status == StoreConnection.Status.INVALID
    assert "WooCommerce answered 401" in connection.last_error
    assert rows(connection)["order.updated"].state == State.ERROR
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@merchant.example"]
    assert "reconnect your WooCommerce store" in mail.outbox[0].subject

    page = operator_client.get(reverse("admin:index")).content.decode()
    assert "Store connections needing attention" in page
    listed = operator_client.get(reverse("admin:platforms_storeconnection_changelist") + "?health=attention")
    assert listed.context["cl"].result_count == 1


def test_without_a_base_url_nothing_is_called_and_the_error_is_recorded(db, settings):
    settings.PLATFORM_WEBHOOK_BASE_URL = ""
    connection = connection_for(Platform.SHOPIFY)
    with responses.RequestsMock():
        result = subscriptions_sync(connection)
    assert webhook_address(connection) == ""
    assert set(result.errors) == {"refunds/create", "orders/cancelled", "app/uninstalled"}
    assert {row.state for row in rows(connection).values()} == {State.ERROR}


def test_app_level_platforms_record_what_the_operator_sets_once(db):
    merchant = MerchantFactory(platform=Platform.ECWID)
    connection = StoreConnectionFactory(merchant=merchant, credentials={"store_id": "1003", "access_token": "t"})
    with responses.RequestsMock():
        result = subscriptions_sync(connection)
    assert result.writes == 0
    assert {topic: row.state for topic, row in rows(connection).items()} == {
        "order.updated": State.APP_LEVEL,
        "application.uninstalled": State.APP_LEVEL,
    }


# --- beat, admin action ---------------------------------------------------------------------------


def test_beat_syncs_due_connections_in_bounded_batches(db, settings):
    settings.SUBSCRIPTIONS_SYNC_BATCH_SIZE = 1
    connection = connection_for(Platform.WOOCOMMERCE)
    fresh = connection_for(Platform.WOOCOMMERCE, subscriptions_synced_at=timezone.now())
    fake = FakeWooCommerce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        first = subscriptions_sync_due()
        second = subscriptions_sync_due()
    assert [result.connection_id for result in first] == [connection.pk]
    assert second == []  # the other one was synced less than a day ago
    assert fresh.pk not in {row.connection_id for row in WebhookSubscription.objects.all()}


def test_the_admin_action_is_confirmed_then_syncs_and_is_audited(operator_client):
    connection = connection_for(Platform.SHOPIFY)
    url = reverse("admin:platforms_storeconnection_changelist")
    fake = FakeShopify()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        confirm = operator_client.post(url, {"action": "sync_subscriptions", "_selected_action": [connection.pk]})
        assert confirm.status_code == 200
        assert "Yes, sync their subscriptions" in confirm.content.decode()
        assert fake.calls == []
        done = operator_client.post(
            url, {"action": "sync_subscriptions", "_selected_action": [connection.pk], "confirmed": "yes"}
        )
    assert done.status_code == 302
    assert len(fake.writes) == 3
    entry = LogEntry.objects.get(object_id=str(connection.pk))
    assert "created: refunds/create, orders/cancelled, app/uninstalled" in entry.get_change_message()
    page = operator_client.get(reverse("admin:platforms_storeconnection_change", args=[connection.pk])).content.decode()
    assert "refunds/create" in page and "Active (verified at the platform)" in page
    assert SECRET not in page


# --- silent stores --------------------------------------------------------------------------------


def test_a_silent_connection_appears_in_triage_and_is_checked_first(db, operator_client, settings):
    settings.STORE_SILENT_AFTER_SECONDS = 3 * 24 * 3600
    settings.STORE_SILENT_MIN_BAGS = 2
    now = timezone.now()
    silent = connection_for(Platform.SHOPIFY)
    quiet_but_fine = connection_for(Platform.SHOPIFY)
    StoreConnection.objects.filter(pk__in=[silent.pk, quiet_but_fine.pk]).update(
        date_created=now - timedelta(days=30), last_event_at=now - timedelta(days=5)
    )
    StoreConnection.objects.filter(pk=quiet_but_fine.pk).update(last_event_at=now - timedelta(hours=2))
    for _ in range(2):
        BagFactory(merchant=silent.merchant, external_id=None)
        BagFactory(merchant=quiet_but_fine.merchant, external_id=None)

    attention = selectors.connections_needing_attention(now=now, silent_after=timedelta(days=3), min_bags=2)
    assert list(attention.values_list("pk", flat=True)) == [silent.pk]

    page = operator_client.get(reverse("admin:index"))
    card = next(c for c in page.context["triage"]["cards"] if c["label"] == "Store connections needing attention")
    assert card["count"] == 1
    listed = operator_client.get(card["href"])
    assert [c.pk for c in listed.context["cl"].result_list] == [silent.pk]

    # The parity check reads the silent store's bags before the others'.
    other = BagFactory(merchant=quiet_but_fine.merchant, external_id="1001")
    mine = BagFactory(merchant=silent.merchant, external_id="2002")
    bags = selectors.bags_for_parity_check(
        platforms=["SHOPIFY"],
        recent_since=now - timedelta(days=1),
        recent_checked_before=now,
        slow_checked_before=now,
        limit=10,
        first_merchant_ids=[silent.merchant_id],
    )
    assert [bag.pk for bag in bags] == [mine.pk, other.pk]


def test_a_delivery_records_when_the_store_was_last_heard_from(shopify_store):
    from tests.platforms.delivery import deliver

    services.connection_heard_from_marks_clear()
    assert shopify_store.connection.last_event_at is None
    deliver(shopify_store, "refunds_create")
    shopify_store.connection.refresh_from_db()
    first = shopify_store.connection.last_event_at
    assert first is not None
    # Within the minute a second delivery writes nothing (the hot path stays one INSERT).
    deliver(shopify_store, "refunds_create", event_id="another-delivery")
    shopify_store.connection.refresh_from_db()
    assert shopify_store.connection.last_event_at == first


def test_a_platform_outage_changes_no_state_and_leaves_the_store_due(db):
    connection = connection_for(Platform.BIGCOMMERCE)
    fake = FakeBigCommerce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        subscriptions_sync(connection)
        fake.fail_status = 503
        result = subscriptions_sync(connection)
    assert result.retry_soon and not result.authentication_failed
    connection.refresh_from_db()
    assert connection.status == StoreConnection.Status.CONNECTED
    assert {row.state for row in rows(connection).values()} == {State.ACTIVE}
    assert all("could not reach the platform" in row.last_error for row in rows(connection).values())
    assert connection.subscriptions_synced_at is not None  # from the first sync: not moved by the outage
    assert not selectors.connections_broken().filter(pk=connection.pk).exists()


def test_connecting_a_wix_store_in_the_portal_records_its_app_level_topics(db, django_capture_on_commit_callbacks):
    from tests.portal.conftest import (
        WIX_ACCOUNT_ID,
        WIX_API_KEY,
        WIX_PROPERTIES_URL,
        WIX_SITE_ID,
        WIX_SITES_URL,
        logged_in,
        portal_user,
        wix_properties_body,
        wix_sites_body,
    )

    merchant = MerchantFactory(platform=Platform.WIX)
    client = logged_in(portal_user(merchant))
    data = {"merchant": merchant.pk, "api_key": WIX_API_KEY, "account_id": WIX_ACCOUNT_ID, "site_id": WIX_SITE_ID}
    with responses.RequestsMock() as mock, django_capture_on_commit_callbacks(execute=True):
        mock.post(WIX_SITES_URL, json=wix_sites_body())
        mock.get(WIX_PROPERTIES_URL, json=wix_properties_body())
        assert client.post(reverse("portal:connect_wix"), data).status_code == 302
    connection = StoreConnection.objects.get(merchant=merchant)
    # Wix subscribes per app, not per site: recorded for the operator, no call to Wix for it.
    assert {topic: row.state for topic, row in rows(connection).items()} == {
        "wix.ecom.v1.order/canceled": State.APP_LEVEL,
        "wix.ecom.v1.order/updated": State.APP_LEVEL,
        "wix.ecom.v1.order_transactions/refund_completed": State.APP_LEVEL,
        "app/removed": State.APP_LEVEL,
    }
    assert connection.subscriptions_synced_at is not None

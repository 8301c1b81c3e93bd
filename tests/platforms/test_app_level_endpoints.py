"""App-level webhook endpoints (issue #15 item 1): Ecwid and Wix send every store's deliveries to the
app's one URL. `/webhooks/ecwid/` (app client secret, routed by `storeId`) and `/webhooks/wix/` (app
public key, routed by `instanceId`) next to the per-connection URLs, which keep working.

Done-when of the issue: two Ecwid stores and two Wix sites on one app, each store's cancellation
refunds its own bag."""

import datetime as dt

import pytest
import responses
from django.urls import reverse

from platforms.connect import connect_store
from platforms.models import InboundEvent, Platform, StoreConnection
from platforms.services import events_replay
from refunds.models import Refund
from tests.platforms.conftest import ecwid_order_url, make_store
from tests.platforms.delivery import ECWID_CLIENT_SECRET, assert_rejected, deliver, fixture_json, post_webhook
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
from violet_refunds.exceptions import ApplicationError

ECWID_APP_URL = reverse("platforms:app_webhook", kwargs={"platform": "ecwid"})
WIX_APP_URL = reverse("platforms:app_webhook", kwargs={"platform": "wix"})
CANCELLED = "webhook_order_updated_cancelled"
# Each store's connection has its own stored secret; app-level deliveries are signed with the app's.
PER_STORE_SECRET = "a-per-connection-secret-not-the-apps"

INSTANCE_A = "1b5ec6a4-8b3e-4d4a-9c6e-2f0a7c1e9d11"  # the captured fixtures' instanceId
INSTANCE_B = "7d0c3b2a-1f9e-4c8d-b7a6-5e4d3c2b1a09"
ORDER_A = "2f7c8a9e-1b3d-4e5f-a6b7-c8d9e0f1a2b3"  # the captured order_canceled fixture's order
ORDER_B = "6e5d4c3b-2a19-4f8e-9d7c-6b5a49382716"
MUG_LINE = "9c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b"
TOWEL_LINE = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"
PLACED = dt.datetime(2024, 3, 14, 16, 20, tzinfo=dt.UTC)  # before 2024-04-22: a cancellation is a refund


# --- Ecwid ---------------------------------------------------------------------------------------


@pytest.fixture
def ecwid_app(settings):
    settings.ECWID_CLIENT_SECRETS = ["another-apps-client-secret", ECWID_CLIENT_SECRET]


def _ecwid_store(store_id: str, order_id: str):
    return make_store(
        Platform.ECWID,
        order_id=order_id,
        line_ids=("123456789", "123456790"),
        webhook_secret=PER_STORE_SECRET,
        credentials={"store_id": store_id, "access_token": f"secret_token_{store_id}"},
    )


def _ecwid_order(order_id: str) -> dict:
    return fixture_json("ecwid", "order_cancelled.json") | {"id": order_id}


def _deliver_ecwid_app(store, store_id: int, order_id: str, event_id: str, **options):
    changes = {"storeId": store_id, "data.orderId": order_id}
    return deliver(
        store, CANCELLED, changes=changes, event_id=event_id, secret=ECWID_CLIENT_SECRET, url=ECWID_APP_URL, **options
    )


@pytest.fixture
def two_ecwid_stores(db, ecwid_app):
    return _ecwid_store("1003", "K8XTQ"), _ecwid_store("2004", "M2QPL")


@responses.activate
def test_two_ecwid_stores_on_one_app_each_cancellation_refunds_its_own_bag(two_ecwid_stores):
    first, second = two_ecwid_stores
    api_first = responses.get(ecwid_order_url("1003", "K8XTQ"), json=_ecwid_order("K8XTQ"))
    api_second = responses.get(ecwid_order_url("2004", "M2QPL"), json=_ecwid_order("M2QPL"))

    one = _deliver_ecwid_app(first, 1003, "K8XTQ", "e-1003")
    two = _deliver_ecwid_app(second, 2004, "M2QPL", "e-2004")

    assert (one.response.status_code, two.response.status_code) == (200, 200)
    assert one.event.connection == first.connection and two.event.connection == second.connection
    assert (one.event.status, two.event.status) == (InboundEvent.Status.PROCESSED, InboundEvent.Status.PROCESSED)
    assert list(Refund.objects.filter(bag=first.bag).values_list("external_id", "amount")) == [("cancel:K8XTQ", 11800)]
    assert list(Refund.objects.filter(bag=second.bag).values_list("external_id", "amount")) == [("cancel:M2QPL", 11800)]
    # Each store's order was read with that store's own token.
    assert api_first.calls[0].request.headers["Authorization"] == "Bearer secret_token_1003"
    assert api_second.calls[0].request.headers["Authorization"] == "Bearer secret_token_2004"


@responses.activate
def test_the_issue_case_store_2004_ignored_on_1003s_url_refunded_on_the_app_url(two_ecwid_stores):
    first, second = two_ecwid_stores
    responses.get(ecwid_order_url("2004", "M2QPL"), json=_ecwid_order("M2QPL"))

    # Posted to connection 1003's own URL (signed with its secret): still not 1003's, and it says where to go.
    wrong = deliver(first, CANCELLED, changes={"storeId": 2004, "data.orderId": "M2QPL"}, event_id="e-wrong")
    assert wrong.event.status == InboundEvent.Status.IGNORED
    assert "for Ecwid store 2004, but this connection is store 1003" in wrong.event.outcome
    assert "/webhooks/ecwid/" in wrong.event.outcome

    right = _deliver_ecwid_app(second, 2004, "M2QPL", "e-right")
    assert right.event.status == InboundEvent.Status.PROCESSED
    assert Refund.objects.get().bag == second.bag


@responses.activate
def test_unknown_store_is_stored_answered_200_ignored_and_recorded_on_replay_once_connected(db, ecwid_app):
    known = _ecwid_store("1003", "K8XTQ")
    delivery = _deliver_ecwid_app(known, 9999, "Q9ZZZ", "e-unknown")

    assert delivery.response.status_code == 200
    event = delivery.event
    assert event.connection is None and event.platform == Platform.ECWID
    assert event.status == InboundEvent.Status.IGNORED
    assert event.outcome.startswith("No connection for Ecwid store 9999")
    assert len(responses.calls) == 0

    # The store connects later: replaying the stored event routes and records it.
    later = _ecwid_store("9999", "Q9ZZZ")
    responses.get(ecwid_order_url("9999", "Q9ZZZ"), json=_ecwid_order("Q9ZZZ"))
    assert events_replay([event]) == {InboundEvent.Status.PROCESSED: 1}
    event.refresh_from_db()
    assert event.connection == later.connection
    assert Refund.objects.get().bag == later.bag


@responses.activate
def test_a_store_connected_twice_is_not_guessed(db, ecwid_app):
    first = _ecwid_store("1003", "K8XTQ")
    _ecwid_store("1003", "K8XTQ")
    delivery = _deliver_ecwid_app(first, 1003, "K8XTQ", "e-twice")

    assert delivery.event.connection is None
    assert delivery.event.status == InboundEvent.Status.IGNORED
    assert "several store connections name it" in delivery.event.outcome
    assert not Refund.objects.exists()


def test_app_level_ecwid_is_verified_with_the_app_secret_not_a_stores(db, ecwid_app):
    store = _ecwid_store("1003", "K8XTQ")
    response = post_webhook(store, CANCELLED, secret=PER_STORE_SECRET, url=ECWID_APP_URL)
    assert_rejected(response, 401, "invalid_signature")
    assert_rejected(post_webhook(store, CANCELLED, secret=None, url=ECWID_APP_URL), 401, "invalid_signature")


def test_app_level_endpoint_without_an_app_secret_configured_is_a_404(db, settings):
    settings.ECWID_CLIENT_SECRETS = []
    settings.WIX_APP_PUBLIC_KEYS = []
    store = _ecwid_store("1003", "K8XTQ")
    assert_rejected(post_webhook(store, CANCELLED, secret=ECWID_CLIENT_SECRET, url=ECWID_APP_URL), 404, "not_found")
    assert post_webhook(store, CANCELLED, url="/webhooks/shopify/").status_code == 404  # no app-level Shopify URL
    assert post_webhook(store, CANCELLED, url="/webhooks/ecwid/").status_code == 404  # the slashed spelling too
    assert not InboundEvent.objects.exists()


@responses.activate
def test_per_connection_ecwid_url_keeps_working(db, ecwid_app):
    store = _ecwid_store("1003", "K8XTQ")
    responses.get(ecwid_order_url("1003", "K8XTQ"), json=_ecwid_order("K8XTQ"))
    delivery = deliver(store, CANCELLED, secret=PER_STORE_SECRET)
    assert delivery.event.status == InboundEvent.Status.PROCESSED
    assert delivery.event.connection == store.connection


def test_the_routing_id_follows_the_credentials(db):
    store = _ecwid_store("1003", "K8XTQ")
    assert store.connection.external_store_id == "1003"
    connection = StoreConnection.objects.defer("credentials").get(pk=store.connection.pk)
    connection.status = StoreConnection.Status.INVALID
    connection.save(update_fields=["status"])  # credentials not loaded: the routing id is left alone
    connection = StoreConnection.objects.get(pk=store.connection.pk)
    assert connection.external_store_id == "1003"
    connection.credentials = {"store_id": " 2004 ", "access_token": "t"}
    connection.save(update_fields=["credentials"])
    assert StoreConnection.objects.get(pk=connection.pk).external_store_id == "2004"


# --- Wix -----------------------------------------------------------------------------------------


@pytest.fixture
def wix_app(settings, wix_keys):
    settings.WIX_APP_PUBLIC_KEYS = [wix_keys[1]]


def _wix_site(instance_id: str, order_id: str, *, webhook_secret: str = ""):
    credentials = {"api_key": "IST.test-key-0123456789", "account_id": "a", "site_id": "s"}
    if instance_id:
        credentials["instance_id"] = instance_id
    return make_store(
        Platform.WIX,
        order_id=order_id,
        line_ids=(MUG_LINE, TOWEL_LINE),
        webhook_secret=webhook_secret,
        credentials=credentials,
        placed_at=PLACED,
    )


def _wix_cancel(store, instance_id: str, order_id: str, event_id: str, **options):
    order = "data.actionEvent.body.order"
    changes = {
        "instanceId": instance_id,
        "data.entityId": order_id,
        f"{order}.id": order_id,
        f"{order}.createdDate": "2024-03-14T16:20:05.000Z",
    }
    return deliver(store, "order_canceled", changes=changes, event_id=event_id, **options)


@pytest.fixture
def two_wix_sites(db, wix_app):
    return _wix_site(INSTANCE_A, ORDER_A), _wix_site(INSTANCE_B, ORDER_B)


def test_two_wix_sites_on_one_app_each_cancellation_refunds_its_own_bag(two_wix_sites):
    site_a, site_b = two_wix_sites
    one = _wix_cancel(site_a, INSTANCE_A, ORDER_A, "w-a", url=WIX_APP_URL)
    two = _wix_cancel(site_b, INSTANCE_B.upper(), ORDER_B, "w-b", url=WIX_APP_URL)

    assert (one.response.status_code, two.response.status_code) == (200, 200)
    assert one.event.connection == site_a.connection and two.event.connection == site_b.connection
    assert list(Refund.objects.filter(bag=site_a.bag).values_list("external_id", "amount")) == [
        (f"cancel:{ORDER_A}", 11800)
    ]
    assert list(Refund.objects.filter(bag=site_b.bag).values_list("external_id", "amount")) == [
        (f"cancel:{ORDER_B}", 11800)
    ]


def test_unknown_wix_instance_is_stored_and_ignored_with_the_reason(two_wix_sites):
    site_a, _ = two_wix_sites
    delivery = _wix_cancel(site_a, "00000000-1111-4222-8333-444444444444", ORDER_A, "w-x", url=WIX_APP_URL)
    assert delivery.response.status_code == 200
    assert delivery.event.connection is None
    assert delivery.event.status == InboundEvent.Status.IGNORED
    assert delivery.event.outcome.startswith("No connection for Wix site instance 00000000-1111-4222-8333-444444444444")
    assert not Refund.objects.exists()


def test_app_level_wix_refuses_a_token_signed_by_another_key(db, settings, wix_keys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    settings.WIX_APP_PUBLIC_KEYS = [
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ]
    site = _wix_site(INSTANCE_A, ORDER_A)
    assert_rejected(post_webhook(site, "order_canceled", url=WIX_APP_URL), 401, "invalid_signature")


def test_per_connection_wix_url_ignores_another_instance(two_wix_sites, wix_keys):
    site_a, _ = two_wix_sites
    site_a.connection.webhook_secret = wix_keys[1]
    site_a.connection.save(update_fields=["webhook_secret"])
    # Site B's cancellation, signed with the shared app key, posted to site A's own URL.
    delivery = _wix_cancel(site_a, INSTANCE_B, ORDER_A, "w-misrouted")
    assert delivery.event.status == InboundEvent.Status.IGNORED
    assert f"for Wix site instance {INSTANCE_B}, but this connection is instance {INSTANCE_A}" in delivery.event.outcome
    assert not Refund.objects.exists()


def test_per_connection_without_an_instance_id_ignores_an_instance_another_connection_claims(db, wix_keys):
    legacy = _wix_site("", ORDER_A, webhook_secret=wix_keys[1])
    _wix_site(INSTANCE_B, ORDER_B)
    claimed = _wix_cancel(legacy, INSTANCE_B, ORDER_A, "w-claimed")
    assert claimed.event.status == InboundEvent.Status.IGNORED
    assert "not of this connection" in claimed.event.outcome

    # An instance nobody claims: as before, the connection's own event.
    own = _wix_cancel(legacy, INSTANCE_A, ORDER_A, "w-own")
    assert own.event.status == InboundEvent.Status.PROCESSED
    assert Refund.objects.get().bag == legacy.bag


# --- Wix connect: the instance id is stored at connect time ---------------------------------------


@pytest.fixture
def wix_accepts():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(WIX_SITES_URL, json=wix_sites_body())
        mock.get(WIX_PROPERTIES_URL, json=wix_properties_body())
        yield mock


def _credentials(**extra):
    return {"api_key": WIX_API_KEY, "account_id": WIX_ACCOUNT_ID, "site_id": WIX_SITE_ID, **extra}


def test_portal_connect_stores_the_instance_id_and_a_reconnect_keeps_it(db, wix_accepts):
    from tests.factories import MerchantFactory

    merchant = MerchantFactory(platform=Platform.WIX)
    client = logged_in(portal_user(merchant))
    data = {"merchant": merchant.pk, **_credentials(instance_id=f" {INSTANCE_B.upper()} ")}
    assert client.post(reverse("portal:connect_wix"), data).status_code == 302
    connection = StoreConnection.objects.get(merchant=merchant)
    assert connection.external_store_id == INSTANCE_B
    assert connection.credentials["instance_id"] == INSTANCE_B

    connect_store(merchant=merchant, credentials=_credentials())  # no instance id given: kept
    assert StoreConnection.objects.get(merchant=merchant).external_store_id == INSTANCE_B


def test_connect_refuses_an_instance_id_of_another_store(db, wix_accepts):
    from tests.factories import MerchantFactory

    _wix_site(INSTANCE_A, ORDER_A)
    merchant = MerchantFactory(platform=Platform.WIX)
    with pytest.raises(ApplicationError) as refused:
        connect_store(merchant=merchant, credentials=_credentials(instance_id=INSTANCE_A))
    assert "instance_id" in refused.value.field_errors
    with pytest.raises(ApplicationError) as malformed:
        connect_store(merchant=merchant, credentials=_credentials(instance_id="not-a-uuid"))
    assert "instance_id" in malformed.value.field_errors
    assert not StoreConnection.objects.filter(merchant=merchant).exists()

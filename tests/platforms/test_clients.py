"""Outbound clients: timeouts, bounded retries on 5xx/connection errors, typed 4xx errors, Wix validation."""

from decimal import Decimal

import pytest
import requests
import responses

from platforms.clients.base import (
    ConnectionMisconfigured,
    PlatformAuthenticationFailed,
    PlatformNotFound,
    PlatformRequestRejected,
    PlatformResponseInvalid,
    PlatformUnavailable,
)
from platforms.clients.ecwid import EcwidClient
from platforms.clients.shopify import ShopifyClient
from platforms.clients.wix import WixClient, WixCredentialsInvalid, validate_wix_credentials
from tests.factories import StoreConnectionFactory
from tests.platforms.conftest import ecwid_order_url
from tests.platforms.delivery import fixture_json

ORDER_URL = ecwid_order_url("1003", "K8XTQ")
SITES_URL = "https://www.wixapis.com/site-list/v2/sites/query"
PROPERTIES_URL = "https://www.wixapis.com/site-properties/v4/properties"
API_KEY = "IST.eyJraWQiOiJQb3pIX2FDMiIsImFsZyI6IlJTMjU2In0.test-key"
ACCOUNT_ID = "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e"
SITE_ID = "83799f16-12a9-4803-963e-ed6fed6c7e4d"


def ecwid() -> EcwidClient:
    return EcwidClient(store_id="1003", access_token="secret_token")


@responses.activate
def test_get_order_parses_numbers_as_decimal():
    responses.get(ORDER_URL, body='{"id": "K8XTQ", "total": 118.10}', content_type="application/json")
    order = ecwid().get_order("K8XTQ")
    assert order["total"] == Decimal("118.10")


@responses.activate
def test_timeouts_are_set_and_a_timeout_is_retried():
    responses.get(ORDER_URL, body=requests.ReadTimeout("read timed out"))
    responses.get(ORDER_URL, json={"id": "K8XTQ"})
    client = ecwid()
    seen_timeouts = []
    original = client.session.request

    def spy(method, url, **kwargs):
        seen_timeouts.append(kwargs["timeout"])
        return original(method, url, **kwargs)

    client.session.request = spy
    assert client.get_order("K8XTQ") == {"id": "K8XTQ"}
    assert seen_timeouts == [(3.05, 10.0), (3.05, 10.0)]


@responses.activate
def test_persistent_timeouts_raise_a_transient_error_after_bounded_attempts():
    responses.get(ORDER_URL, body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(PlatformUnavailable) as raised:
        ecwid().get_order("K8XTQ")
    assert raised.value.transient is True
    assert len(responses.calls) == 3


@responses.activate
def test_connection_errors_are_retried():
    responses.get(ORDER_URL, body=requests.ConnectionError("refused"))
    responses.get(ORDER_URL, json={"id": "K8XTQ"})
    assert ecwid().get_order("K8XTQ") == {"id": "K8XTQ"}
    assert len(responses.calls) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
@responses.activate
def test_5xx_and_429_are_retried_then_succeed(status):
    responses.get(ORDER_URL, status=status, body="busy")
    responses.get(ORDER_URL, status=status, body="busy")
    responses.get(ORDER_URL, json={"id": "K8XTQ"})
    assert ecwid().get_order("K8XTQ") == {"id": "K8XTQ"}
    assert len(responses.calls) == 3


@responses.activate
def test_persistent_5xx_raises_platform_unavailable_with_the_status():
    responses.get(ORDER_URL, status=503, body="Service Unavailable")
    with pytest.raises(PlatformUnavailable) as raised:
        ecwid().get_order("K8XTQ")
    assert raised.value.http_status == 503
    assert "503" in raised.value.message
    assert len(responses.calls) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, PlatformRequestRejected), (401, PlatformAuthenticationFailed), (403, PlatformAuthenticationFailed),
     (404, PlatformNotFound), (422, PlatformRequestRejected)],
)  # fmt: skip
@responses.activate
def test_4xx_raises_at_once_without_retrying(status, error):
    responses.get(ORDER_URL, status=status, json={"errorMessage": "nope"})
    with pytest.raises(error) as raised:
        ecwid().get_order("K8XTQ")
    assert raised.value.transient is False
    assert raised.value.http_status == status
    assert len(responses.calls) == 1


@responses.activate
def test_error_messages_never_contain_the_token():
    responses.get(ORDER_URL, status=401, json={"errorMessage": "Token is invalid"})
    with pytest.raises(PlatformAuthenticationFailed) as raised:
        ecwid().get_order("K8XTQ")
    assert "secret_token" not in raised.value.message
    assert responses.calls[0].request.headers["Authorization"] == "Bearer secret_token"


@responses.activate
def test_a_2xx_that_is_not_json_is_a_typed_error():
    responses.get(ORDER_URL, body="<html>maintenance</html>", status=200)
    with pytest.raises(PlatformResponseInvalid):
        ecwid().get_order("K8XTQ")


def test_missing_credentials_are_a_typed_error(db):
    connection = StoreConnectionFactory(credentials={"store_id": " "})
    with pytest.raises(ConnectionMisconfigured, match="store_id, access_token"):
        EcwidClient.from_connection(connection)


@responses.activate
def test_shopify_graphql_reads_an_order_and_reports_query_errors():
    client = ShopifyClient(shop_domain="blue-mug.myshopify.com", access_token="shpat_x")
    url = "https://blue-mug.myshopify.com/admin/api/2025-01/graphql.json"
    responses.post(url, json={"data": {"order": {"id": "gid://shopify/Order/450789469", "cancelledAt": None}}})
    responses.post(url, json={"errors": [{"message": "Field 'refundz' doesn't exist"}]})

    assert client.get_order_refunds("450789469")["id"] == "gid://shopify/Order/450789469"
    assert responses.calls[0].request.headers["X-Shopify-Access-Token"] == "shpat_x"
    with pytest.raises(PlatformRequestRejected, match="refundz"):
        client.get_order_refunds("450789469")


# --- Wix credentials (spec 3.6-3.7, seed 003) ---


@responses.activate
def test_wix_credentials_are_trimmed_and_validated_with_two_calls():
    sites = responses.post(SITES_URL, json=fixture_json("wix", "sites_query.json"))
    properties = responses.get(PROPERTIES_URL, json=fixture_json("wix", "site_properties.json"))

    site = validate_wix_credentials(api_key=f"  {API_KEY}\n", account_id=f" {ACCOUNT_ID} ", site_id=f"{SITE_ID}  ")

    assert (site.site_id, site.display_name, site.currency) == (SITE_ID, "Blue Mug Co.", "USD")
    account_call, site_call = sites.calls[0].request, properties.calls[0].request
    assert account_call.headers["Authorization"] == API_KEY  # bare key, no "Bearer"
    assert account_call.headers["wix-account-id"] == ACCOUNT_ID
    assert "wix-site-id" not in account_call.headers
    assert site_call.headers["wix-site-id"] == SITE_ID
    assert "wix-account-id" not in site_call.headers


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api_key": "short"}, "api_key"),
        ({"api_key": "has a space in it 0123456789"}, "api_key"),
        ({"account_id": "not-a-guid"}, "account_id"),
        ({"site_id": "https://manage.wix.com/dashboard/x/home"}, "site_id"),
    ],
)
@responses.activate
def test_wix_credential_formats_are_checked_before_any_call(kwargs, field):
    values = {"api_key": API_KEY, "account_id": ACCOUNT_ID, "site_id": SITE_ID, **kwargs}
    with pytest.raises(WixCredentialsInvalid) as raised:
        validate_wix_credentials(**values)
    assert list(raised.value.field_errors) == [field]
    assert len(responses.calls) == 0


@responses.activate
def test_wix_key_refused_for_the_account():
    responses.post(SITES_URL, status=403, json={"message": "permission denied"})
    with pytest.raises(WixCredentialsInvalid) as raised:
        validate_wix_credentials(api_key=API_KEY, account_id=ACCOUNT_ID, site_id=SITE_ID)
    assert set(raised.value.field_errors) == {"api_key", "account_id"}


@responses.activate
def test_wix_site_of_another_account():
    responses.post(SITES_URL, json=fixture_json("wix", "sites_query.json"))
    with pytest.raises(WixCredentialsInvalid) as raised:
        validate_wix_credentials(api_key=API_KEY, account_id=ACCOUNT_ID, site_id="22222222-3333-4444-8555-666666666666")
    assert list(raised.value.field_errors) == ["site_id"]
    assert len(responses.calls) == 1


@responses.activate
def test_wix_key_without_site_permissions():
    responses.post(SITES_URL, json=fixture_json("wix", "sites_query.json"))
    responses.get(PROPERTIES_URL, status=403, json={"message": "missing permission"})
    with pytest.raises(WixCredentialsInvalid) as raised:
        validate_wix_credentials(api_key=API_KEY, account_id=ACCOUNT_ID, site_id=SITE_ID)
    assert list(raised.value.field_errors) == ["api_key"]


@responses.activate
def test_wix_down_is_a_transient_error_not_a_credentials_error():
    responses.post(SITES_URL, status=503, body="unavailable")
    with pytest.raises(PlatformUnavailable):
        validate_wix_credentials(api_key=API_KEY, account_id=ACCOUNT_ID, site_id=SITE_ID)
    assert len(responses.calls) == 3


@responses.activate
def test_wix_sites_query_follows_cursors():
    first = {"sites": [{"id": "11111111-2222-4333-8444-555555555555"}], "metadata": {"cursors": {"next": "c2"}}}
    responses.post(SITES_URL, json=first)
    responses.post(SITES_URL, json=fixture_json("wix", "sites_query.json"))
    client = WixClient(api_key=API_KEY, account_id=ACCOUNT_ID)
    assert len(client.query_sites()) == 3
    assert b'"cursor": "c2"' in responses.calls[1].request.body

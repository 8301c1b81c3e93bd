"""Platform API hosts are settings (issue #15 item 6): the defaults are the production hosts the clients
always called, and overriding a setting changes the URL a client calls (staging, sandbox, test server)."""

from datetime import UTC, datetime

import pytest
import responses
from django.conf import settings
from django.test import override_settings

from platforms.clients.bigcommerce import BigCommerceClient
from platforms.clients.ecwid import EcwidClient
from platforms.clients.sfcc import SfccClient
from platforms.clients.shopify import ShopifyClient
from platforms.clients.wix import WixClient
from tests.platforms.delivery import fixture_json

STAGING = "https://staging.example.test"


def _sfcc() -> SfccClient:
    return SfccClient(
        short_code="kv7kzm78",
        organization_id="f_ecom_zysr_001",
        site_id="RefArch",
        client_id="client",
        client_secret="secret",
    )


def test_defaults_are_the_production_hosts():
    assert settings.SHOPIFY_ADMIN_API_URL == "https://{shop_domain}/admin/api/{api_version}"
    assert settings.ECWID_API_BASE_URL == "https://app.ecwid.com/api/v3"
    assert settings.WIX_API_BASE_URL == "https://www.wixapis.com"
    assert settings.BIGCOMMERCE_API_BASE_URL == "https://api.bigcommerce.com/stores"
    assert settings.SFCC_API_URL == "https://{short_code}.api.commercecloud.salesforce.com"
    assert settings.SFCC_TOKEN_URL == "https://account.demandware.com/dwsso/oauth2/access_token"
    assert ShopifyClient(shop_domain="blue-mug.myshopify.com", access_token="t").graphql_url == (
        "https://blue-mug.myshopify.com/admin/api/2025-01/graphql.json"
    )
    assert _sfcc().orders_url == (
        "https://kv7kzm78.api.commercecloud.salesforce.com/checkout/orders/v1/organizations/f_ecom_zysr_001/orders"
    )
    assert SfccClient.token_url == "https://account.demandware.com/dwsso/oauth2/access_token"


@responses.activate
@override_settings(ECWID_API_BASE_URL=f"{STAGING}/ecwid/api/v3/")
def test_ecwid_base_url_setting():
    call = responses.get(f"{STAGING}/ecwid/api/v3/1003/orders/K8XTQ", json={"id": "K8XTQ"})
    assert EcwidClient(store_id="1003", access_token="secret_t").get_order("K8XTQ") == {"id": "K8XTQ"}
    assert call.call_count == 1


@responses.activate
@override_settings(WIX_API_BASE_URL=f"{STAGING}/wix")
def test_wix_base_url_setting():
    call = responses.get(f"{STAGING}/wix/site-properties/v4/properties", json={"properties": {"siteDisplayName": "S"}})
    assert WixClient(api_key="IST.key", site_id="s").get_site_properties() == {"siteDisplayName": "S"}
    assert call.call_count == 1


@responses.activate
@override_settings(BIGCOMMERCE_API_BASE_URL=f"{STAGING}/bc/stores")
def test_bigcommerce_base_url_setting():
    call = responses.get(f"{STAGING}/bc/stores/abc123/v2/orders/250", json={"id": 250})
    assert BigCommerceClient(store_hash="abc123", access_token="t").get_order("250") == {"id": 250}
    assert call.call_count == 1


@responses.activate
@override_settings(SHOPIFY_ADMIN_API_URL="https://shopify-mock.example.test/{shop_domain}/admin/api/{api_version}")
def test_shopify_admin_api_url_setting():
    call = responses.post(
        "https://shopify-mock.example.test/blue-mug.myshopify.com/admin/api/2025-01/graphql.json",
        json={"data": {"order": {"id": "gid://shopify/Order/450789469"}}},
    )
    client = ShopifyClient(shop_domain="blue-mug.myshopify.com", access_token="shpat_t")
    assert client.get_order_refunds("450789469") == {"id": "gid://shopify/Order/450789469"}
    assert call.call_count == 1


@responses.activate
@override_settings(
    SFCC_API_URL="https://{short_code}.sandbox.example.test",
    SFCC_TOKEN_URL=f"{STAGING}/dwsso/oauth2/access_token",
)
def test_sfcc_api_and_token_url_settings():
    token = responses.post(f"{STAGING}/dwsso/oauth2/access_token", json=fixture_json("sfcc", "token.json"))
    search = responses.get(
        "https://kv7kzm78.sandbox.example.test/checkout/orders/v1/organizations/f_ecom_zysr_001/orders",
        json={"limit": 200, "offset": 0, "total": 0, "data": []},
    )
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert list(_sfcc().iter_orders_modified(modified_from=start, modified_to=start)) == []
    assert (token.call_count, search.call_count) == (1, 1)
    assert SfccClient.token_url == f"{STAGING}/dwsso/oauth2/access_token"  # the class attribute follows too


@pytest.mark.parametrize(
    "setting",
    ["SHOPIFY_ADMIN_API_URL", "ECWID_API_BASE_URL", "WIX_API_BASE_URL", "BIGCOMMERCE_API_BASE_URL", "SFCC_API_URL"],
)
def test_every_base_url_setting_is_documented_in_the_readme(setting):
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert f"`{setting}`" in readme

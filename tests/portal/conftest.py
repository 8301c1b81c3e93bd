"""Portal test helpers: merchants with portal users, funded SFCC Option 2 bags, a mocked Wix API."""

import pytest
import responses
from django.test import Client

from platforms.clients.base import PlatformHttpClient
from platforms.models import Platform, SfccRefundMode
from tests.factories import MerchantFactory, MerchantMembershipFactory, UserFactory
from tests.world import funded_bag

WIX_SITES_URL = "https://www.wixapis.com/site-list/v2/sites/query"
WIX_PROPERTIES_URL = "https://www.wixapis.com/site-properties/v4/properties"
WIX_API_KEY = "IST.eyJraWQiOiJQb3pIX2FDMiIsImFsZyI6IlJTMjU2In0.portal-secret-key-5f2a9c"
WIX_ACCOUNT_ID = "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e"
# Not the seed's example id: the connect page shows that one as a hint.
WIX_SITE_ID = "5c1d7e2a-9b3f-4e61-a0d8-2f4b6c8e1a97"


def portal_user(merchant=None, **user_fields):
    """A user acting for `merchant` (a new Shopify merchant when None)."""
    merchant = merchant or MerchantFactory()
    user = UserFactory(**user_fields)
    MerchantMembershipFactory(merchant=merchant, user=user)
    return user


def logged_in(user, **client_kwargs) -> Client:
    client = Client(**client_kwargs)
    client.force_login(user)
    return client


def sfcc_merchant(mode=SfccRefundMode.MANUAL_NOTICE, **fields):
    return MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=mode, **fields)


def notice_bag(merchant=None, **fields):
    """A funded bag of an SFCC Option 2 merchant: two SKUs (50.00 × 2, 15.00 × 1), shipping 5.00, tax 8.00."""
    merchant = merchant or sfcc_merchant()
    fields.setdefault("skus", ((5000, 2), (1500, 1)))
    return funded_bag(merchant=merchant, **fields)


def wix_sites_body(site_id=WIX_SITE_ID):
    return {
        "sites": [
            {"id": "11111111-2222-4333-8444-555555555555", "displayName": "Old pop-up shop"},
            {"id": site_id, "displayName": "Blue Mug Co."},
        ],
        "metadata": {"count": 2, "cursors": {}},
    }


def wix_properties_body():
    return {"properties": {"paymentCurrency": "USD", "siteDisplayName": "Blue Mug Co."}}


@pytest.fixture(autouse=True)
def _no_client_backoff(monkeypatch):
    # Platform clients still retry (Wix down = 3 attempts), without sleeping between them.
    monkeypatch.setattr(PlatformHttpClient, "backoff_seconds", 0)


@pytest.fixture
def wix_api():
    """A mocked Wix API (the `responses` library): nothing leaves the machine."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def wix_accepts(wix_api):
    wix_api.post(WIX_SITES_URL, json=wix_sites_body())
    wix_api.get(WIX_PROPERTIES_URL, json=wix_properties_body())
    return wix_api

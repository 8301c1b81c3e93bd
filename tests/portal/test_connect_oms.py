"""The portal's "Connect your order management system" page (SFCC, issue #25) against a recorded
Salesforce org; the home page's instructions for OMS merchants."""

import datetime as dt

import pytest
import responses
from django.urls import reverse

from platforms.models import OmsConnection, Platform, SfccRefundMode
from tests.factories import MerchantFactory
from tests.platforms.salesforce_org import BASE_URL, CLIENT_ID, CLIENT_SECRET, SalesforceOrg
from tests.portal.conftest import logged_in, portal_user, sfcc_merchant

pytestmark = pytest.mark.django_db

URL = reverse("portal:connect_oms")


@responses.activate
def test_merchant_connects_salesforce_order_management():
    merchant = sfcc_merchant(SfccRefundMode.CANCEL_AS_REFUND, name="Cedar Ridge")
    client = logged_in(portal_user(merchant))
    org = SalesforceOrg(responses)

    page = client.get(URL)
    assert page.status_code == 200
    assert "My Domain URL" in page.content.decode()

    response = client.post(
        URL, {"merchant": merchant.pk, "base_url": BASE_URL, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )

    assert response.status_code == 302
    assert org.tokens_issued == 1
    oms = OmsConnection.objects.get(merchant=merchant)
    assert oms.status == OmsConnection.Status.CONNECTED
    merchant.refresh_from_db()
    assert merchant.sfcc_refund_mode == SfccRefundMode.ORDER_MANAGEMENT
    followed = client.get(URL).content.decode()
    assert "is <strong>connected</strong>" in followed
    assert CLIENT_SECRET not in followed


@responses.activate
def test_refused_credentials_show_an_error_and_save_nothing():
    merchant = sfcc_merchant()
    client = logged_in(portal_user(merchant))
    SalesforceOrg(responses)

    response = client.post(
        URL, {"merchant": merchant.pk, "base_url": BASE_URL, "client_id": CLIENT_ID, "client_secret": "nope"}
    )

    assert response.status_code == 400
    body = response.content.decode()
    assert "did not accept these credentials" in body
    assert "nope" not in body
    assert not OmsConnection.objects.exists()


def test_another_merchants_store_cannot_be_connected_or_disconnected():
    mine = sfcc_merchant()
    other = sfcc_merchant(SfccRefundMode.ORDER_MANAGEMENT)
    OmsConnection.objects.create(
        merchant=other, base_url=BASE_URL, credentials={"client_id": "x", "client_secret": "y"}
    )
    client = logged_in(portal_user(mine))

    response = client.post(URL, {"merchant": other.pk, "base_url": BASE_URL, "client_id": "a", "client_secret": "b"})
    assert response.status_code == 400
    client.post(reverse("portal:disconnect_oms"), {"merchant": other.pk})
    assert OmsConnection.objects.get(merchant=other).status == OmsConnection.Status.CONNECTED


def test_non_sfcc_merchants_have_no_oms_page():
    client = logged_in(portal_user(MerchantFactory(platform=Platform.SHOPIFY)))
    assert client.get(URL).status_code == 404


def test_disconnect_from_the_portal():
    merchant = sfcc_merchant(SfccRefundMode.ORDER_MANAGEMENT)
    OmsConnection.objects.create(
        merchant=merchant, base_url=BASE_URL, credentials={"client_id": "x", "client_secret": "y"}
    )
    client = logged_in(portal_user(merchant))

    response = client.post(reverse("portal:disconnect_oms"), {"merchant": merchant.pk})

    assert response.status_code == 302
    oms = OmsConnection.objects.get(merchant=merchant)
    assert (oms.status, oms.credentials) == (OmsConnection.Status.DISCONNECTED, None)


def test_home_tells_oms_merchants_refunds_are_found_automatically_with_the_last_sync():
    merchant = sfcc_merchant(SfccRefundMode.ORDER_MANAGEMENT)
    OmsConnection.objects.create(
        merchant=merchant,
        base_url=BASE_URL,
        credentials={"client_id": "x", "client_secret": "y"},
        last_success_at=dt.datetime(2026, 3, 3, 13, 55, tzinfo=dt.UTC),
    )
    body = logged_in(portal_user(merchant)).get(reverse("portal:home")).content.decode()

    assert "Refunds are found automatically" in body
    assert "Last successful sync: 2026-03-03 13:55 UTC." in body
    assert "Report a refund" not in body

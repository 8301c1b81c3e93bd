"""Real browser: an SFCC merchant connects its Salesforce Order Management org in the portal (issue
#25), sees the connection and its sync state, then disconnects. Salesforce is a recorded org
(`responses` patches requests in every thread, so the live server's calls are answered)."""

import re

import pytest
import responses

from platforms.models import OmsConnection, SfccRefundMode
from tests.factories import DEFAULT_PASSWORD
from tests.platforms.salesforce_org import BASE_URL, CLIENT_ID, CLIENT_SECRET, SalesforceOrg
from tests.portal.conftest import portal_user, sfcc_merchant

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def org():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield SalesforceOrg(mock)


def test_sfcc_merchant_connects_order_management_then_disconnects(live_server, page, screenshot, org):
    merchant = sfcc_merchant(SfccRefundMode.MANUAL_NOTICE, name="Cedar Ridge Outdoor")
    portal_user(merchant, username="cedar-owner")

    page.goto(f"{live_server.url}/portal/login/")
    page.get_by_label("Username").fill("cedar-owner")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Order management system", exact=True).click()
    page.wait_for_url(re.compile(r".*/portal/connect/oms/$"))

    # A wrong secret first: the error says so and the secret is not sent back to the page.
    page.get_by_label("My Domain URL").fill(BASE_URL)
    page.get_by_label("Consumer key").fill(CLIENT_ID)
    page.get_by_label("Consumer secret").fill("not-the-secret")
    page.get_by_role("button", name="Connect").click()
    assert "did not accept these credentials" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Consumer secret").input_value() == ""
    assert not OmsConnection.objects.exists()

    page.get_by_label("My Domain URL").fill(f"{BASE_URL}/lightning/page/home")
    page.get_by_label("Consumer key").fill(f" {CLIENT_ID} ")
    page.get_by_label("Consumer secret").fill(CLIENT_SECRET)
    screenshot("portal-connect-oms")
    page.get_by_role("button", name="Connect").click()

    page.wait_for_url(re.compile(r".*/portal/connect/oms/$"))
    main = page.locator("main").inner_text()
    assert "refunds are now found automatically" in main
    assert f"Salesforce Order Management at {BASE_URL} is connected." in main
    assert "Last successful sync: none yet" in main
    oms = OmsConnection.objects.get(merchant=merchant)
    assert oms.credentials == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert org.tokens_issued == 1

    page.get_by_role("link", name="Home", exact=True).click()
    assert "Refunds are found automatically" in page.locator("main").inner_text()

    page.get_by_role("link", name="Order management system", exact=True).click()
    page.get_by_role("button", name="Disconnect").click()
    page.wait_for_url(re.compile(r".*/portal/connect/oms/$"))
    assert "is disconnected" in page.locator("main").inner_text()
    oms.refresh_from_db()
    assert (oms.status, oms.credentials) == (OmsConnection.Status.DISCONNECTED, None)

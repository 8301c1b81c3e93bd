"""Real browser: a Wix merchant arrives from a channel, connects the store (Violet Connect, seed 003)
and is redirected back to the channel.

Wix is mocked with `responses` (it patches requests for every thread, so the live server's call is
answered). The channel's site is not on this machine either: the browser's request to it is answered
by a Playwright route, which is enough to prove where the browser went.
"""

import re

import pytest
import requests
import responses

from platforms.models import Platform, StoreConnection
from tests.factories import DEFAULT_PASSWORD, AppFactory, MerchantFactory
from tests.portal.conftest import (
    WIX_ACCOUNT_ID,
    WIX_API_KEY,
    WIX_PROPERTIES_URL,
    WIX_SITE_ID,
    WIX_SITES_URL,
    portal_user,
    wix_properties_body,
    wix_sites_body,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def wix_accepts():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(WIX_SITES_URL, json=wix_sites_body())
        mock.get(WIX_PROPERTIES_URL, json=wix_properties_body())
        yield mock


def test_wix_merchant_connects_and_goes_back_to_the_channel(live_server, page, screenshot, wix_accepts):
    merchant = MerchantFactory(platform=Platform.WIX, name="Blue Mug Co.")
    portal_user(merchant, username="wix-owner")
    channel = AppFactory(name="Mug Channel", allowed_redirect_hosts=["channel.example"])
    back_at_channel = []

    def channel_site(route):
        back_at_channel.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>Welcome back to Mug Channel</h1>")

    page.route("https://channel.example/**", channel_site)

    # The channel sends the merchant to the connect page; the portal asks them to log in first.
    connect_url = (
        f"{live_server.url}/portal/connect/wix/?app_id={channel.pk}"
        "&redirect_uri=https%3A%2F%2Fchannel.example%2Fviolet%2Fconnected%3Fstate%3Dabc"
    )
    page.goto(connect_url)
    page.wait_for_url(re.compile(r".*/portal/login/\?next=.*"))
    page.get_by_label("Username").fill("wix-owner")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/portal/connect/wix/\?app_id=.*"))
    assert "When your store is connected you go back to Mug Channel." in page.locator("main").inner_text()

    # Step 2 of the seed, with the copy/paste noise merchants bring along.
    page.get_by_label("API Key").fill(f"  {WIX_API_KEY} ")
    page.get_by_label("Account ID").fill(f" {WIX_ACCOUNT_ID}\t")
    page.get_by_label("Site ID").fill(f"{WIX_SITE_ID}  ")
    screenshot("portal-connect-wix")
    page.get_by_role("button", name="Connect").click()

    page.wait_for_url(re.compile(r"https://channel\.example/violet/connected\?.*"))
    assert back_at_channel == [f"https://channel.example/violet/connected?state=abc&merchant_id={merchant.pk}"]
    assert "Welcome back to Mug Channel" in page.content()
    connection = StoreConnection.objects.get(merchant=merchant)
    assert connection.status == StoreConnection.Status.CONNECTED
    assert connection.credentials == {"api_key": WIX_API_KEY, "account_id": WIX_ACCOUNT_ID, "site_id": WIX_SITE_ID}


def test_refused_credentials_show_the_seeds_advice(live_server, page, screenshot):
    merchant = MerchantFactory(platform=Platform.WIX)
    portal_user(merchant, username="wix-typo")
    with responses.RequestsMock() as wix:
        wix.post(WIX_SITES_URL, status=403, json={"message": "Forbidden"})
        page.goto(f"{live_server.url}/portal/login/")
        page.get_by_label("Username").fill("wix-typo")
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{live_server.url}/portal/")
        page.get_by_role("link", name="Connect your Wix store").click()
        page.get_by_label("API Key").fill(WIX_API_KEY)
        page.get_by_label("Account ID").fill(WIX_ACCOUNT_ID)
        page.get_by_label("Site ID").fill(WIX_SITE_ID)
        page.get_by_role("button", name="Connect").click()
        page.wait_for_selector("#error-summary")
    summary = page.locator("#error-summary").inner_text()
    assert "Check for any spaces or other copy/paste errors and try again." in summary
    assert page.get_by_label("API Key").input_value() == ""  # the key is never sent back...
    assert WIX_API_KEY not in page.content()
    # ...but it is kept for the next try (Wix shows a key only once), and so is every other field.
    assert f"ending in …{WIX_API_KEY[-4:]}" in page.locator("#id_api_key_helptext").inner_text()
    assert page.get_by_label("Account ID").input_value() == WIX_ACCOUNT_ID
    assert page.get_by_label("Site ID").input_value() == WIX_SITE_ID
    screenshot("portal-connect-wix-refused")
    assert not StoreConnection.objects.filter(merchant=merchant).exists()


def test_wix_offline_keeps_every_field_and_connects_on_the_next_click(live_server, page, screenshot):
    merchant = MerchantFactory(platform=Platform.WIX)
    portal_user(merchant, username="wix-offline")
    with responses.RequestsMock() as wix:
        wix.post(WIX_SITES_URL, body=requests.ConnectionError("connection refused"))
        page.goto(f"{live_server.url}/portal/login/")
        page.get_by_label("Username").fill("wix-offline")
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{live_server.url}/portal/")
        page.goto(f"{live_server.url}/portal/connect/wix/")
        page.get_by_label("API Key").fill(WIX_API_KEY)
        page.get_by_label("Account ID").fill(WIX_ACCOUNT_ID)
        page.get_by_label("Site ID").fill(WIX_SITE_ID)
        page.get_by_role("button", name="Connect").click()
        page.wait_for_selector("#error-summary")
        assert "Your entries are kept below (the API key too)" in page.locator("#error-summary").inner_text()
        assert page.get_by_label("Account ID").input_value() == WIX_ACCOUNT_ID
        assert page.get_by_label("Site ID").input_value() == WIX_SITE_ID
        assert f"ending in …{WIX_API_KEY[-4:]}" in page.locator("#id_api_key_helptext").inner_text()
        screenshot("portal-connect-wix-offline-kept")

        wix.replace("POST", WIX_SITES_URL, json=wix_sites_body())
        wix.get(WIX_PROPERTIES_URL, json=wix_properties_body())
        page.get_by_role("button", name="Connect").click()  # the key field left empty: the kept key is used
        page.wait_for_url(f"{live_server.url}/portal/")
    assert StoreConnection.objects.get(merchant=merchant).credentials["api_key"] == WIX_API_KEY

"""Connect your Wix store (seed 003, Violet Connect) against a mocked Wix API (`responses`): valid,
invalid key (403), wrong site id, network error; credentials encrypted at rest and never in logs,
pages or error messages."""

import logging

import pytest
import requests
from cryptography.fernet import Fernet
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from platforms.connect import clean_pasted_value, connect_store
from platforms.models import Platform, StoreConnection
from portal import views
from tests.factories import AppFactory, MerchantFactory, MerchantMembershipFactory, StoreConnectionFactory
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
from violet_refunds.exceptions import ValidationFailed

pytestmark = pytest.mark.django_db

URL = reverse("portal:connect_wix")
SEED_ERROR = "Check for any spaces or other copy/paste errors and try again."
SECRETS = (WIX_API_KEY, WIX_API_KEY[-20:])


@pytest.fixture
def merchant():
    return MerchantFactory(platform=Platform.WIX, name="Blue Mug")


@pytest.fixture
def client(merchant):
    return logged_in(portal_user(merchant))


@pytest.fixture
def channel():
    return AppFactory(name="Mug Channel", allowed_redirect_hosts=["channel.example", "shop.channel.example:8443"])


def form(store, **overrides):
    data = {"merchant": store.pk, "api_key": WIX_API_KEY, "account_id": WIX_ACCOUNT_ID, "site_id": WIX_SITE_ID}
    data.update(overrides)
    return data


def assert_no_secret(text: str):
    for secret in SECRETS:
        assert secret not in text


def raw_credentials_column(merchant) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM platforms_storeconnection WHERE merchant_id = %s", [merchant.pk])
        return cursor.fetchone()[0]


# --- the page ------------------------------------------------------------------------------------


def test_the_page_asks_for_the_seeds_fields_in_the_seeds_order(client):
    page = client.get(URL).content.decode()
    labels = [
        page.index(f'<label for="id_{name}">{label} <span class="required-mark">(required)</span></label>')
        for name, label in (("api_key", "API Key"), ("account_id", "Account ID"), ("site_id", "Site ID"))
    ]
    assert labels == sorted(labels)
    assert ">Connect</button>" in page
    # The seed's hints: where each value is found, and step 1's scopes.
    for hint in (
        "Account Settings",
        "Generate API Key",
        "Account ID section on the right",
        "/dashboard/",
        "/home",
        "Get Sites List",
        "Manage Sites",
        "Wix Stores",
        "Wix Currencies",
        "Business Info",
        "about 3 minutes",
    ):
        assert hint in page, hint
    assert 'type="password"' in page  # the key is never echoed back


def test_a_merchant_without_a_wix_store_is_told_so():
    client = logged_in(portal_user(MerchantFactory(platform=Platform.SHOPIFY)))
    response = client.get(URL)
    assert (
        response.status_code == 200 and "None of the stores on your account is a Wix store" in response.content.decode()
    )


# --- valid credentials ---------------------------------------------------------------------------


def test_valid_credentials_are_stored_encrypted_and_the_merchant_goes_back_to_the_channel(
    client, merchant, channel, wix_accepts
):
    start = client.get(URL, {"app_id": channel.pk, "redirect_uri": "https://channel.example/violet/done?s=1"})
    assert "you go back to <strong>Mug Channel</strong>" in start.content.decode()
    data = form(merchant, app_id=channel.pk, redirect_uri="https://channel.example/violet/done?s=1")
    response = client.post(URL, data)
    assert response.status_code == 302
    assert response["Location"] == f"https://channel.example/violet/done?s=1&merchant_id={merchant.pk}"
    connection_row = StoreConnection.objects.get(merchant=merchant)
    assert connection_row.status == StoreConnection.Status.CONNECTED and connection_row.last_verified_at
    assert connection_row.credentials == {"api_key": WIX_API_KEY, "account_id": WIX_ACCOUNT_ID, "site_id": WIX_SITE_ID}
    stored = raw_credentials_column(merchant)
    for value in (WIX_API_KEY, WIX_ACCOUNT_ID, WIX_SITE_ID, "api_key"):
        assert value not in stored
    # Wix was really asked: account-level with the account id, site-level with the site id.
    sites_call, properties_call = (call.request for call in wix_accepts.calls)
    assert sites_call.url == WIX_SITES_URL and sites_call.headers["wix-account-id"] == WIX_ACCOUNT_ID
    assert properties_call.url == WIX_PROPERTIES_URL and properties_call.headers["wix-site-id"] == WIX_SITE_ID
    assert sites_call.headers["Authorization"] == WIX_API_KEY


def test_without_a_registered_redirect_the_merchant_lands_on_the_portal_home(client, merchant, channel, wix_accepts):
    response = client.post(URL, form(merchant, app_id=channel.pk, redirect_uri="https://evil.example/x"), follow=True)
    assert response.redirect_chain == [(reverse("portal:home"), 302)]
    page = response.content.decode()
    assert "Your Wix store Blue Mug Co. is connected." in page
    assert "Connected" in page
    assert_no_secret(page)


def test_copy_paste_noise_is_removed(client, merchant, wix_accepts):
    noisy = form(
        merchant,
        api_key=f"  \u200b{WIX_API_KEY[:30]}\n{WIX_API_KEY[30:]} \t",
        account_id=f'"{WIX_ACCOUNT_ID.upper()}"\u00a0',
        site_id=f" \ufeff{WIX_SITE_ID} ",
    )
    assert client.post(URL, noisy).status_code == 302
    assert StoreConnection.objects.get(merchant=merchant).credentials == {
        "api_key": WIX_API_KEY,
        "account_id": WIX_ACCOUNT_ID,
        "site_id": WIX_SITE_ID,
    }


def test_new_credentials_replace_old_ones(client, merchant, wix_accepts):
    StoreConnectionFactory(merchant=merchant, credentials={"api_key": "old"}, status=StoreConnection.Status.INVALID)
    assert client.post(URL, form(merchant)).status_code == 302
    row = StoreConnection.objects.get(merchant=merchant)
    assert row.credentials["api_key"] == WIX_API_KEY and row.status == StoreConnection.Status.CONNECTED


def test_a_user_with_two_wix_stores_chooses_one(merchant, wix_accepts):
    user = portal_user(merchant)
    second = MerchantFactory(platform=Platform.WIX, name="Second Mug")
    MerchantMembershipFactory(merchant=second, user=user)
    client = logged_in(user)
    page = client.get(URL).content.decode()
    assert '<select name="merchant"' in page and "Second Mug" in page
    assert client.post(URL, form(second)).status_code == 302
    assert StoreConnection.objects.get(merchant=second).status == StoreConnection.Status.CONNECTED
    assert not StoreConnection.objects.filter(merchant=merchant).exists()


# --- refused credentials -------------------------------------------------------------------------


def test_an_invalid_key_403_shows_the_seeds_error_and_stores_nothing(client, merchant, wix_api):
    wix_api.post(WIX_SITES_URL, status=403, json={"message": "Forbidden", "details": {}})
    response = client.post(URL, form(merchant))
    assert response.status_code == 400
    page = response.content.decode()
    assert "Wix did not accept these credentials. " + SEED_ERROR in page
    assert "Check the key" in str(response.context["form"].errors["api_key"])
    assert not StoreConnection.objects.filter(merchant=merchant).exists()
    assert_no_secret(page)


def test_a_wrong_site_id_is_reported_on_the_site_id(client, merchant, wix_api):
    wix_api.post(WIX_SITES_URL, json=wix_sites_body(site_id="22222222-3333-4444-8555-666666666666"))
    response = client.post(URL, form(merchant))
    assert response.status_code == 400
    assert "does not belong to the account" in str(response.context["form"].errors["site_id"])
    assert SEED_ERROR in response.content.decode()
    assert not StoreConnection.objects.filter(merchant=merchant).exists()


def test_a_key_without_site_access_is_reported_on_the_key(client, merchant, wix_api):
    wix_api.post(WIX_SITES_URL, json=wix_sites_body())
    wix_api.get(WIX_PROPERTIES_URL, status=403, json={"message": "Forbidden"})
    response = client.post(URL, form(merchant))
    assert response.status_code == 400
    assert "Business Info" in str(response.context["form"].errors["api_key"])


def test_wix_unreachable_saves_nothing_and_says_try_again(client, merchant, wix_api):
    wix_api.post(WIX_SITES_URL, body=requests.ConnectionError("connection refused"))
    existing = StoreConnectionFactory(merchant=merchant, credentials={"api_key": "kept"})
    response = client.post(URL, form(merchant))
    assert response.status_code == 400
    assert "We could not reach Wix to check your credentials. Nothing was saved" in response.content.decode()
    existing.refresh_from_db()
    assert existing.credentials == {"api_key": "kept"}
    assert len(wix_api.calls) == 3  # the client's bounded retries


def test_wix_500_is_unreachable_too(client, merchant, wix_api):
    wix_api.post(WIX_SITES_URL, status=503, body="upstream down")
    response = client.post(URL, form(merchant))
    assert "We could not reach Wix" in response.content.decode()
    assert not StoreConnection.objects.filter(merchant=merchant).exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"api_key": ""}, "api_key", "Enter the API key you generated in Wix (step 1)."),
        ({"api_key": "short key"}, "api_key", "Paste the whole API key exactly as Wix showed it"),
        ({"account_id": "not-a-uuid"}, "account_id", "The Account ID looks like"),
        ({"account_id": ""}, "account_id", "Enter your Account ID"),
        (
            {"site_id": "https://manage.wix.com/dashboard/x/home"},
            "site_id",
            "The Site ID is the id between /dashboard/ and /home",
        ),
        ({"site_id": WIX_SITE_ID + "0"}, "site_id", "The Site ID is the id between /dashboard/ and /home"),
        ({"merchant": "abc"}, "merchant", "Select a valid choice"),
        ({"api_key": WIX_API_KEY + "\x00"}, "api_key", "Null characters are not allowed."),
    ],
)
def test_formats_are_checked_before_any_call_to_wix(client, merchant, wix_api, overrides, field, message):
    response = client.post(URL, form(merchant, **overrides))
    assert response.status_code == 400
    assert message in str(response.context["form"].errors[field])
    assert len(wix_api.calls) == 0
    assert not StoreConnection.objects.filter(merchant=merchant).exists()


def test_the_connect_service_refuses_platforms_it_cannot_connect():

    with pytest.raises(ValidationFailed):
        connect_store(merchant=MerchantFactory(platform=Platform.SHOPIFY), credentials={})


@pytest.mark.parametrize(
    ("pasted", "clean"),
    [
        (" abc ", "abc"),
        ("a b\nc", "abc"),
        ("\u200babc\ufeff", "abc"),
        ('"abc"', "abc"),
        ("`abc`", "abc"),
        ("\u00a0abc\u2003", "abc"),
        ("<abc>", "abc"),
        ("", ""),
    ],
)
def test_clean_pasted_value(pasted, clean):
    assert clean_pasted_value(pasted) == clean


# --- credentials never appear in logs, pages or error messages -----------------------------------


def test_credentials_never_appear_in_logs_or_pages(client, merchant, channel, wix_api, caplog):
    caplog.set_level(logging.DEBUG)
    pages = []
    # Invalid (403), Wix down, format error, then valid.
    wix_api.post(WIX_SITES_URL, status=403, json={"message": "Forbidden"})
    pages.append(client.post(URL, form(merchant)).content.decode())
    wix_api.replace("POST", WIX_SITES_URL, body=requests.ConnectionError("refused"))
    pages.append(client.post(URL, form(merchant)).content.decode())
    pages.append(client.post(URL, form(merchant, site_id="bad")).content.decode())
    wix_api.replace("POST", WIX_SITES_URL, json=wix_sites_body())
    wix_api.get(WIX_PROPERTIES_URL, json=wix_properties_body())
    response = client.post(URL, form(merchant, app_id=channel.pk, redirect_uri="https://channel.example/back"))
    assert response.status_code == 302
    assert_no_secret(response["Location"])
    for url in (URL, reverse("portal:home"), reverse("portal:orders"), reverse("portal:refunds")):
        pages.append(client.get(url).content.decode())
    for page in pages:
        assert_no_secret(page)
    # After connecting, no page shows the account or site id either.
    for page in pages[-4:]:
        assert WIX_ACCOUNT_ID not in page and WIX_SITE_ID not in page
    assert "Store of merchant" in caplog.text  # the connection is logged, without credentials
    for value in (*SECRETS, WIX_ACCOUNT_ID, WIX_SITE_ID):
        assert value not in caplog.text
    assert StoreConnection.objects.get(merchant=merchant).status == StoreConnection.Status.CONNECTED


def test_credentials_are_hidden_in_django_error_reports(merchant, wix_accepts, monkeypatch, caplog):
    """If connecting ever crashed, Django's error report (admin emails, Sentry-like handlers) would not
    print the posted credentials: the view marks them sensitive."""

    def crash(**kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(views, "connect_store", crash)
    client = Client(raise_request_exception=False)
    client.force_login(portal_user(merchant))
    with caplog.at_level(logging.ERROR, logger="django.request"):
        assert client.post(URL, form(merchant)).status_code == 500
    record = next(r for r in caplog.records if r.name == "django.request")
    cleansed = SafeExceptionReporterFilter().get_post_parameters(record.request)
    for name in ("api_key", "account_id", "site_id"):
        assert cleansed[name] == SafeExceptionReporterFilter.cleansed_substitute
    assert_no_secret(caplog.text)


def test_a_wrong_encryption_key_does_not_break_the_portal(client, merchant, wix_accepts, settings):
    """Fault matrix row 40: credentials stored under another FIELD_ENCRYPTION_KEY cannot be read, but
    the portal never needs to read them: its pages work and new credentials replace the old ones."""
    StoreConnectionFactory(merchant=merchant, credentials={"api_key": "old"})
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    for url in (reverse("portal:home"), URL):
        page = client.get(url)
        assert page.status_code == 200, url
    assert client.post(URL, form(merchant)).status_code == 302
    assert StoreConnection.objects.only("credentials").get(merchant=merchant).credentials["api_key"] == WIX_API_KEY


def test_every_field_with_a_problem_is_reported_at_once(client, merchant, wix_api):
    response = client.post(URL, form(merchant, api_key="", account_id="nope", site_id="nope either"))
    errors = response.context["form"].errors
    assert errors["api_key"] == ["Enter the API key you generated in Wix (step 1)."]
    assert "The Account ID looks like" in errors["account_id"][0]
    assert "The Site ID is the id between" in errors["site_id"][0]
    assert len(wix_api.calls) == 0


def test_an_empty_form_says_what_is_missing_on_each_field(client, merchant, wix_api):
    response = client.post(URL, {"merchant": merchant.pk})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["api_key"] == ["Enter the API key you generated in Wix (step 1)."]
    assert "Enter your Account ID" in errors["account_id"][0] and "Enter your Site ID" in errors["site_id"][0]
    assert "not in the expected format" not in response.content.decode()
    assert len(wix_api.calls) == 0


def test_wix_unreachable_keeps_every_field_and_the_key_for_the_next_try(client, merchant, wix_api):
    wix_api.post(WIX_SITES_URL, body=requests.ConnectionError("connection refused"))
    response = client.post(URL, form(merchant))
    page = response.content.decode()
    assert "Your entries are kept below (the API key too)" in page
    assert f'value="{WIX_ACCOUNT_ID}"' in page and f'value="{WIX_SITE_ID}"' in page
    assert_no_secret(page)  # the key itself never goes back to the browser...
    assert f"ending in …{WIX_API_KEY[-4:]}" in page  # ...but the merchant sees it is kept
    assert WIX_API_KEY not in str(client.session.get("portal.connect_wix.kept_api_key"))  # encrypted
    # Wix is back: Connect again without pasting the key (Wix showed it only once).
    wix_api.replace("POST", WIX_SITES_URL, json=wix_sites_body())
    wix_api.get(WIX_PROPERTIES_URL, json=wix_properties_body())
    again = client.post(URL, form(merchant, api_key=""))
    assert again.status_code == 302
    assert StoreConnection.objects.get(merchant=merchant).credentials["api_key"] == WIX_API_KEY
    assert "portal.connect_wix.kept_api_key" not in client.session  # dropped once connected

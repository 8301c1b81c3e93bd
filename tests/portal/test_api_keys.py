"""API keys page: create (shown once), list, revoke; only for SFCC Option 2 stores."""

import re

import pytest
from django.urls import reverse

from platforms.models import MerchantApiKey, Platform
from portal.keys import MAX_ACTIVE_KEYS_PER_MERCHANT, api_key_authenticate, api_key_create
from tests.factories import MerchantFactory
from tests.portal.conftest import logged_in, portal_user, sfcc_merchant
from violet_refunds.exceptions import ValidationFailed

pytestmark = pytest.mark.django_db

URL = reverse("portal:api_keys")


@pytest.fixture
def merchant():
    return sfcc_merchant()


@pytest.fixture
def user(merchant):
    return portal_user(merchant, username="bob")


def test_a_created_key_is_shown_once_and_works(merchant, user):
    client = logged_in(user)
    response = client.post(URL, {"merchant": merchant.pk, "name": "OMS refunds job"})
    assert response.status_code == 200
    page = response.content.decode()
    plaintext = re.search(r'<code class="secret" id="new-api-key">([^<]+)</code>', page).group(1)
    key = MerchantApiKey.objects.get(merchant=merchant)
    assert key.name == "OMS refunds job" and key.created_by == user and plaintext.startswith(key.prefix)
    assert api_key_authenticate(plaintext) == key
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    # Never again: the list shows the prefix only.
    later = client.get(URL).content.decode()
    assert plaintext not in later and f"{key.prefix}…" in later


def test_a_key_is_revoked_and_refused_afterwards(merchant, user):
    created = api_key_create(merchant=merchant, name="OMS")
    client = logged_in(user)
    response = client.post(reverse("portal:api_key_revoke", args=[created.api_key.pk]))
    assert response.status_code == 302
    created.api_key.refresh_from_db()
    assert created.api_key.revoked_at is not None
    assert api_key_authenticate(created.plaintext) is None
    again = client.post(reverse("portal:api_key_revoke", args=[created.api_key.pk]), follow=True)
    assert "already revoked" in again.content.decode()


def test_revoke_needs_post(merchant, user):
    created = api_key_create(merchant=merchant, name="OMS")
    assert logged_in(user).get(reverse("portal:api_key_revoke", args=[created.api_key.pk])).status_code == 405


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "This field is required."), ("   ", "This field is required."), ("n" * 101, "at most 100 characters")],
)
def test_key_name_rules(merchant, user, name, message):
    response = logged_in(user).post(URL, {"merchant": merchant.pk, "name": name})
    assert response.status_code == 400
    assert message in str(response.context["form"].errors["name"])
    assert not MerchantApiKey.objects.exists()


def test_at_most_ten_active_keys(merchant, user):
    for index in range(MAX_ACTIVE_KEYS_PER_MERCHANT):
        api_key_create(merchant=merchant, name=f"k{index}")
    response = logged_in(user).post(URL, {"merchant": merchant.pk, "name": "one more"})
    assert response.status_code == 400
    assert "Revoke a key first" in str(response.context["form"].errors["name"])
    assert MerchantApiKey.objects.count() == MAX_ACTIVE_KEYS_PER_MERCHANT


def test_a_key_cannot_be_made_for_another_merchant(merchant, user):
    other = sfcc_merchant()
    response = logged_in(user).post(URL, {"merchant": other.pk, "name": "sneaky"})
    assert response.status_code == 400
    assert "Select a valid choice" in str(response.context["form"].errors["merchant"])
    assert not MerchantApiKey.objects.exists()


@pytest.mark.parametrize("platform", [Platform.SHOPIFY, Platform.WIX, Platform.ECWID])
def test_stores_whose_platform_reports_refunds_get_no_keys(platform):
    merchant = MerchantFactory(platform=platform)
    client = logged_in(portal_user(merchant))
    page = client.get(URL)
    assert page.status_code == 200 and "API keys are for Salesforce Commerce Cloud stores" in page.content.decode()
    assert client.post(URL, {"merchant": merchant.pk, "name": "x"}).status_code == 403
    assert not MerchantApiKey.objects.exists()


def test_the_service_refuses_option_1_stores():

    with pytest.raises(ValidationFailed):
        api_key_create(merchant=sfcc_merchant(mode="CANCEL_AS_REFUND"), name="x")


def test_the_page_documents_the_endpoint(user):
    page = logged_in(user).get(URL).content.decode()
    assert "http://testserver/portal/api/refund-notices" in page
    assert "Authorization: Bearer" in page

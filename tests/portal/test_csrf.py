"""CSRF (fault matrix row 37): every portal form refuses a POST without the token; only the
key-authenticated refund-notice API does without one."""

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal.keys import api_key_create
from tests.factories import MerchantFactory, MerchantMembershipFactory
from tests.portal.conftest import notice_bag, portal_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def bag():
    return notice_bag()


@pytest.fixture
def user(bag):
    user = portal_user(bag.merchant)
    MerchantMembershipFactory(merchant=MerchantFactory(platform="WIX"), user=user)
    return user


def form_posts(bag, key):
    return [
        (reverse("portal:refund_report", args=[bag.pk]), {"reference": "R1", "form_token": "t" * 24}),
        (reverse("portal:api_keys"), {"merchant": bag.merchant.pk, "name": "k"}),
        (reverse("portal:api_key_revoke", args=[key.pk]), {}),
        (reverse("portal:connect_wix"), {"api_key": "k" * 30}),
        (reverse("portal:logout"), {}),
    ]


def test_every_logged_in_form_refuses_a_post_without_the_token(bag, user):
    key = api_key_create(merchant=bag.merchant, name="k").api_key
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    for url, data in form_posts(bag, key):
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url
    key.refresh_from_db()
    assert key.revoked_at is None
    assert not bag.refunds.exists()


def test_a_foreign_origin_is_refused_even_with_a_token(bag, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(reverse("portal:home"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("portal:api_keys"),
        {"merchant": bag.merchant.pk, "name": "k", "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="https://evil.example",
        secure=True,
    )
    assert response.status_code == 403


def test_anonymous_forms_refuse_a_post_without_the_token():
    client = Client(enforce_csrf_checks=True)
    for url, data in [
        (reverse("portal:login"), {"username": "a", "password": "b"}),
        (reverse("portal:password_reset"), {"email": "a@example.com"}),
    ]:
        assert client.post(url, data).status_code == 403, url


def test_the_password_reset_confirm_form_refuses_a_post_without_the_token(user):

    client = Client(enforce_csrf_checks=True)
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    page = client.get(
        reverse("portal:password_reset_confirm", args=[uid, default_token_generator.make_token(user)]), follow=True
    )
    set_url = page.redirect_chain[-1][0]
    response = client.post(set_url, {"new_password1": "x new passphrase 7", "new_password2": "x new passphrase 7"})
    assert response.status_code == 403
    user.refresh_from_db()
    assert not user.check_password("x new passphrase 7")


def test_forms_with_the_token_pass(bag, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(reverse("portal:api_keys"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("portal:api_keys"), {"merchant": bag.merchant.pk, "name": "k", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200
    assert bag.merchant.api_keys.count() == 1

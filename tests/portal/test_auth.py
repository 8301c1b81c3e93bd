"""Login, logout, password reset and login throttling (django-axes; fault matrix row 38)."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.portal.conftest import portal_user

pytestmark = pytest.mark.django_db

LOGIN = reverse("portal:login")
GENERIC = "That username and password do not match an active account."


def login(client, username, password=DEFAULT_PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password, **extra}, REMOTE_ADDR="203.0.113.7")


def test_a_merchant_user_logs_in_and_lands_on_home(client):
    portal_user(username="carol")
    response = login(client, "carol")
    assert response.status_code == 302 and response["Location"] == reverse("portal:home")
    assert client.get(reverse("portal:home")).status_code == 200


def test_login_follows_only_a_local_next(client):
    portal_user(username="carol")
    assert login(client, "carol", next="/portal/refunds/")["Location"] == "/portal/refunds/"
    client.post(reverse("portal:logout"))
    assert login(client, "carol", next="https://evil.example/")["Location"] == reverse("portal:home")


@pytest.mark.parametrize(
    ("username", "password"),
    [("carol", "wrong password"), ("nobody-like-this", DEFAULT_PASSWORD), ("inactive", DEFAULT_PASSWORD)],
)
def test_failed_logins_all_get_the_same_generic_message(client, username, password):
    portal_user(username="carol")
    portal_user(username="inactive", is_active=False)
    response = login(client, username, password)
    assert response.status_code == 200
    page = response.content.decode()
    assert GENERIC in page
    assert "inactive" not in page.replace('value="inactive"', "")


def test_logins_lock_after_the_configured_failures(client, settings):
    portal_user(username="carol")
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert GENERIC in login(client, "carol", f"wrong {attempt}").content.decode()
    locked = login(client, "carol", "wrong again")
    assert locked.status_code == 429
    assert "Too many failed login attempts. Try again later." in locked.content.decode()
    assert "<!doctype html>" in locked.content.decode()  # the portal's own lockout page
    # Locked means locked: the right password does not get in either.
    still = login(client, "carol")
    assert still.status_code == 429
    assert client.get(reverse("portal:home")).status_code == 302


def test_an_unknown_user_locks_the_same_way(client, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        response = login(client, "ghost", f"guess {attempt}")
    assert response.status_code == 429
    assert "Too many failed login attempts" in response.content.decode()


def test_a_lockout_is_per_user_and_address(client, settings):
    portal_user(username="carol")
    portal_user(username="dave")
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        login(client, "carol", f"wrong {attempt}")
    assert login(client, "dave").status_code == 302


def test_logout_needs_post_and_ends_the_session(client):
    portal_user(username="carol")
    login(client, "carol")
    assert client.get(reverse("portal:logout")).status_code == 405
    response = client.post(reverse("portal:logout"))
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert client.get(reverse("portal:home")).status_code == 302


def test_password_reset_by_email(client):
    user = portal_user(username="erin", email="erin@store.example")
    response = client.post(reverse("portal:password_reset"), {"email": "erin@store.example"})
    assert response.status_code == 302 and response["Location"] == reverse("portal:password_reset_done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["erin@store.example"] and message.subject == "Reset your merchant portal password"
    link = re.search(r"http://testserver(/portal/password-reset/[^/\s]+/[^/\s]+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200 and "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(
        set_url, {"new_password1": "a brand new passphrase 42", "new_password2": "a brand new passphrase 42"}
    )
    assert done.status_code == 302 and done["Location"] == reverse("portal:password_reset_complete")
    user.refresh_from_db()
    assert user.check_password("a brand new passphrase 42")
    assert Client().get(link, follow=True).context["validlink"] is False  # the link works once


def test_password_reset_does_not_reveal_accounts(client):
    response = client.post(reverse("portal:password_reset"), {"email": "nobody@store.example"})
    assert response.status_code == 302 and response["Location"] == reverse("portal:password_reset_done")
    assert mail.outbox == []


def test_an_invalid_reset_link_says_so(client):
    UserFactory()
    page = client.get("/portal/password-reset/MQ/bad-token/", follow=True).content.decode()
    assert "This link is not valid any more" in page


def test_the_login_page_is_accessible(client):
    page = client.get(LOGIN).content.decode()
    assert '<label for="id_username">' in page and '<label for="id_password">' in page
    assert 'name="viewport"' in page and 'lang="en"' in page
    response = login(client, "ghost", "x")
    assert 'role="alert"' in response.content.decode()

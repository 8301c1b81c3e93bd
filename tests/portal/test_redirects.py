"""redirect_uri after "Connect your store" is never an open redirect: only https URLs on a host the
channel (App) registered, otherwise the portal home."""

import pytest
from django.urls import reverse

from platforms.models import Platform
from portal.redirects import channel_redirect_app, channel_redirect_url
from tests.factories import AppFactory, MerchantFactory
from tests.portal.conftest import WIX_ACCOUNT_ID, WIX_API_KEY, WIX_SITE_ID, logged_in, portal_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def app():
    return AppFactory(allowed_redirect_hosts=["channel.example", "Shop.Channel.Example:8443", 42, ""])


@pytest.fixture
def other_app():
    return AppFactory(allowed_redirect_hosts=["other-channel.example"])


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://channel.example/violet/done", "https://channel.example/violet/done?merchant_id=7"),
        ("https://CHANNEL.example/x?a=1&a=2#frag", "https://CHANNEL.example/x?a=1&a=2&merchant_id=7#frag"),
        ("https://channel.example:443/x", "https://channel.example:443/x?merchant_id=7"),
        ("https://shop.channel.example:8443/back", "https://shop.channel.example:8443/back?merchant_id=7"),
        ("https://channel.example/x?merchant_id=999", "https://channel.example/x?merchant_id=7"),
    ],
)
def test_registered_hosts_are_followed(app, uri, expected):
    assert channel_redirect_url(app.pk, uri, merchant_id=7, allow_http=False) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/",  # another host
        "https://channel.example.evil.example/",  # suffix trick
        "https://evilchannel.example/",
        "//evil.example/path",  # scheme-relative
        "//channel.example/path",  # scheme-relative even to the right host
        "/portal/",  # relative: not a channel
        "javascript:alert(document.domain)",
        "JavaScript://channel.example/%0Aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http://channel.example/",  # http while DEBUG is off
        "ftp://channel.example/",
        "https://channel.example@evil.example/",  # userinfo: the host is evil.example
        "https://evil.example@channel.example/",  # userinfo at all is refused
        "https://user:pass@channel.example/",
        "https://channel.example%40evil.example/",
        "https://channel.example\\@evil.example/",  # backslash
        "https:\\\\evil.example",
        "https:/\\evil.example",
        "https://channel.example:8443/",  # port not registered for that host
        "https://shop.channel.example/",  # registered only with its port
        "https://channel.example:99999/",  # invalid port
        "https://channel.example./",  # trailing dot is another name
        " https://channel.example/",  # whitespace and control characters
        "https://channel.example/\nLocation: https://evil.example",
        "https://channel.example/\t",
        "https://chаnnel.example/",  # Cyrillic a
        "https://" + "a" * 2050 + ".channel.example/",
        "https:///channel.example",
        "",
    ],
)
def test_everything_else_falls_back_to_home(app, uri):
    assert channel_redirect_url(app.pk, uri, merchant_id=7, allow_http=False) is None


def test_the_host_must_be_registered_for_that_app(app, other_app):
    assert channel_redirect_app(other_app.pk, "https://channel.example/", allow_http=False) is None
    assert channel_redirect_app(app.pk, "https://other-channel.example/", allow_http=False) is None
    assert channel_redirect_app(other_app.pk, "https://other-channel.example/", allow_http=False) == other_app


@pytest.mark.parametrize("app_id", ["", None, "abc", "0", "-1", "999999", "1e3", str(2**64)])
def test_an_unknown_or_malformed_app_id_is_not_followed(app, app_id):
    assert channel_redirect_url(app_id, "https://channel.example/", merchant_id=7, allow_http=False) is None


def test_http_only_while_debug(app):
    assert channel_redirect_url(app.pk, "http://channel.example/x", merchant_id=7, allow_http=True) == (
        "http://channel.example/x?merchant_id=7"
    )
    assert channel_redirect_url(app.pk, "javascript:alert(1)", merchant_id=7, allow_http=True) is None


def test_an_app_without_hosts_redirects_nowhere():
    app = AppFactory(allowed_redirect_hosts=[])
    assert channel_redirect_url(app.pk, "https://channel.example/", merchant_id=7, allow_http=False) is None
    broken = AppFactory(allowed_redirect_hosts={"channel.example": True})
    assert channel_redirect_url(broken.pk, "https://channel.example/", merchant_id=7, allow_http=False) is None


def test_the_connect_view_uses_it_end_to_end(app, wix_accepts, caplog):
    """An evil redirect_uri on a real connect: home, not evil."""

    merchant = MerchantFactory(platform=Platform.WIX)
    client = logged_in(portal_user(merchant))
    data = {
        "merchant": merchant.pk,
        "api_key": WIX_API_KEY,
        "account_id": WIX_ACCOUNT_ID,
        "site_id": WIX_SITE_ID,
        "app_id": app.pk,
        "redirect_uri": "//evil.example/steal",
    }
    with caplog.at_level("WARNING", logger="portal.views"):
        page = client.get(reverse("portal:connect_wix"), {"app_id": app.pk, "redirect_uri": "//evil.example/steal"})
    # The channel's misconfiguration goes to the operators' log, not to the merchant.
    assert "not registered" not in page.content.decode()
    assert f"redirect_uri of app '{app.pk}' is not registered" in caplog.text
    response = client.post(reverse("portal:connect_wix"), data)
    assert response.status_code == 302 and response["Location"] == reverse("portal:home")

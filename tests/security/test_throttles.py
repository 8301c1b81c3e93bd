"""Rate limits (issue 19, item 4): password spraying and per-username guessing on every login
(channel API, portal, admin), per-credential limits on the channel API and the notice API, 429 in
the API's error shape with Retry-After, and X-Forwarded-For trusted only through TRUSTED_PROXY_COUNT.

tests/conftest.py gives every test an empty local-memory cache, so no count leaks between tests."""

import json
import types

import pytest
from django.test import Client, RequestFactory

from portal.keys import api_key_create
from tests.factories import UserFactory
from tests.portal.conftest import notice_bag
from tests.refunds.api.conftest import api_client, channel, other_channel  # noqa: F401 - fixtures
from violet_refunds import throttling
from violet_refunds.throttling import client_ip, rate_parse


@pytest.fixture(autouse=True)
def one_throttle_window(monkeypatch):
    """The counters are fixed windows of wall-clock time: a test whose requests straddle a window's
    end would see its count restart. Every request of a test here falls in the same window."""
    frozen = types.SimpleNamespace(time=lambda: 1_800_000_010.0)
    monkeypatch.setattr(throttling, "time", frozen)


pytestmark = pytest.mark.django_db

LOGIN = "/v1/login"


def api_login(client, channel, username, password="wrong", **extra):  # noqa: F811, S107
    headers = {k: v for k, v in channel.headers.items() if k != "X-Violet-Token"}
    return client.post(LOGIN, {"username": username, "password": password}, format="json", headers=headers, **extra)


def assert_throttled_json(response):
    assert response.status_code == 429
    body = response.json()
    assert (body["status"], body["error_code"]) == (429, "throttled")
    assert set(body) >= {"status", "message", "error_code", "timestamp"}
    assert int(response["Retry-After"]) >= 1


def test_password_spraying_on_the_api_login_is_throttled_with_the_default_limits(api_client, channel):  # noqa: F811
    """30 logins with 30 different usernames from one address: the per-IP limit (20/min) stops it."""
    statuses = [api_login(api_client, channel, f"victim{n}").status_code for n in range(30)]

    assert statuses[:20] == [401] * 20
    assert statuses[20:] == [429] * 10
    assert_throttled_json(api_login(api_client, channel, "victim99"))


def test_a_throttled_login_is_refused_even_with_the_right_password(api_client, channel, settings):  # noqa: F811
    settings.LOGIN_RATE_PER_IP = "3/m"
    channel.owner.set_password("right-password")
    channel.owner.save()
    for n in range(3):
        api_login(api_client, channel, f"someone{n}")

    response = api_login(api_client, channel, channel.owner.username, password="right-password")

    assert_throttled_json(response)
    assert "token" not in response.content.decode()


def test_one_username_from_many_addresses_is_throttled(api_client, channel, settings):  # noqa: F811
    settings.LOGIN_RATE_PER_USERNAME = "4/m"
    statuses = [api_login(api_client, channel, "ada", REMOTE_ADDR=f"203.0.113.{n}").status_code for n in range(1, 7)]
    assert statuses == [401, 401, 401, 401, 429, 429]


def test_x_forwarded_for_is_not_trusted_by_default(api_client, channel, settings):  # noqa: F811
    settings.LOGIN_RATE_PER_IP = "3/m"
    statuses = [
        api_login(api_client, channel, f"u{n}", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code for n in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]  # one REMOTE_ADDR: one bucket, whatever the header says


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(api_client, channel, settings):  # noqa: F811
    settings.LOGIN_RATE_PER_IP = "3/m"
    settings.TRUSTED_PROXY_COUNT = 1
    spoofed = "10.9.9.9, 198.51.100.7"  # the client wrote the first entry; our proxy appended the second
    statuses = [api_login(api_client, channel, f"u{n}", HTTP_X_FORWARDED_FOR=spoofed).status_code for n in range(4)]
    others = [
        api_login(api_client, channel, f"w{n}", HTTP_X_FORWARDED_FOR=f"198.51.100.{20 + n}").status_code
        for n in range(3)
    ]
    assert statuses == [401, 401, 401, 429]  # the spoofed first entry does not give a fresh bucket
    assert others == [401, 401, 401]


def test_client_ip_reads_only_what_trusted_proxies_appended(settings):
    factory = RequestFactory()
    request = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9, 10.0.0.1")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 5  # fewer entries than proxies: not through our proxies, REMOTE_ADDR
    assert client_ip(request) == "10.0.0.2"
    garbage = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-ip")
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(garbage) == "10.0.0.2"


@pytest.mark.parametrize("path", ["/portal/login/", "/admin/login/"])
def test_password_spraying_on_the_portal_and_admin_logins_is_throttled(path, settings):
    settings.LOGIN_RATE_PER_IP = "5/m"
    client = Client()
    statuses = [client.post(path, {"username": f"victim{n}", "password": "wrong"}).status_code for n in range(8)]
    assert statuses == [200] * 5 + [429] * 3  # 200: the form again, "wrong username or password"
    response = client.post(path, {"username": "victim99", "password": "wrong"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many login attempts" in response.content.decode()


def test_the_admin_login_still_works_within_the_limits():
    user = UserFactory(username="op2", is_staff=True, is_superuser=True)
    user.set_password("pw-123456")
    user.save()
    response = Client().post("/admin/login/", {"username": "op2", "password": "pw-123456"})
    assert response.status_code == 302


def test_the_channel_api_is_limited_per_app(api_client, channel, other_channel, settings):  # noqa: F811
    settings.API_RATE_LIMIT = "3/m"
    path = "/v1/orders/999999/refunds"
    statuses = [api_client.get(path, headers=channel.headers).status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]
    assert_throttled_json(api_client.get(path, headers=channel.headers))
    assert api_client.get(path, headers=other_channel.headers).status_code == 404  # its own count


def test_the_notice_api_is_limited_per_key(settings):
    settings.NOTICE_API_RATE_LIMIT = "2/m"
    bag = notice_bag()
    key = api_key_create(merchant=bag.merchant, name="OMS")
    client = Client()

    def post():
        return client.post(
            "/portal/api/refund-notices",
            json.dumps({"platform_order_id": "nope", "reference": "RF-1"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key.plaintext}",
        )

    statuses = [post().status_code for _ in range(3)]
    assert 429 not in statuses[:2] and statuses[2] == 429
    assert_throttled_json(post())


def test_rates_parse():
    assert rate_parse("20/m").limit == 20 and rate_parse("20/m").seconds == 60
    assert rate_parse("1200/min").seconds == 60
    assert rate_parse("5/10m").seconds == 600
    assert rate_parse("0") is None and rate_parse("") is None
    with pytest.raises(ValueError):
        rate_parse("5/fortnight")


SHOW_CACHE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.CACHES['default']['BACKEND'], s.CACHES['default'].get('LOCATION')]))"
)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, ["django.core.cache.backends.locmem.LocMemCache", "violet"]),
        (
            {"REDIS_URL": "redis://127.0.0.1:6379/3"},
            ["django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:6379/3"],
        ),
    ],
)
def test_the_counters_live_in_redis_when_there_is_one(environment, expected):
    """The embedded mode counts in local memory; with REDIS_URL every process shares Redis."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "violet_refunds.settings"}
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", SHOW_CACHE],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.redis
def test_the_counter_is_shared_through_redis(redis_url, settings):
    """Two cache handles (as two web processes would have) count together in Redis."""
    import uuid

    from django.core.cache.backends.redis import RedisCache

    from violet_refunds import throttling

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    identity = f"ip-{uuid.uuid4().hex}"
    rate = rate_parse("2/m")
    assert throttling.rate_hit("test", identity, rate) is None
    other_process = RedisCache(redis_url, {})
    key = throttling._key("test", identity, int(throttling.time.time() // 60))
    assert other_process.get(key) == 1
    assert throttling.rate_hit("test", identity, rate) is None
    assert throttling.rate_hit("test", identity, rate) is not None

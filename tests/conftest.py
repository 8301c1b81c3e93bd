"""Test-wide fixtures.

Services: a test marked `postgres` or `redis` (or using the `redis_url` / `require_postgres`
fixtures) needs the real service. Under REQUIRE_SERVICES=1 (CI) an unreachable service is a
failure, never a skip; on a developer's laptop without them the test is skipped with the reason.
"""

import os

import pytest
from django.conf import settings
from django.db import connection

from violet_refunds.celery import app as celery_app

# Tests run tasks in-process unless a test starts a real worker on purpose.
celery_app.conf.task_always_eager = True


def _service_unavailable(reason: str):
    if settings.REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_sessionstart(session):
    if os.environ.get("REQUIRE_SERVICES") in {"1", "true", "True"}:
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            raise pytest.UsageError("REQUIRE_SERVICES=1 needs DATABASE_URL pointing at PostgreSQL, got " + engine)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # Factories hash passwords and app secrets; PBKDF2's work factor would cost ~1 s per test
    # without testing anything more.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    # Rate-limit counters live in the cache: each test gets its own empty local-memory cache (never
    # the Redis of REDIS_URL, which the Celery tests use as their broker), so counts never leak from
    # one test into another. Tests of the limits set small rates themselves.
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_webhook_connection_cache():
    # Connections are cached per process for the webhook receiver; each test starts empty.
    from platforms.selectors import webhook_connection_cache_clear

    webhook_connection_cache_clear()
    yield
    webhook_connection_cache_clear()


@pytest.fixture
def require_postgres():
    if connection.vendor != "postgresql":
        _service_unavailable("PostgreSQL is not the configured database (set DATABASE_URL)")


@pytest.fixture
def redis_url():
    import redis

    url = settings.REDIS_URL or os.environ.get("REDIS_URL", "")
    if not url:
        _service_unavailable("REDIS_URL is not set")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _service_unavailable(f"Redis at {url} is unreachable: {exc}")
    return url


@pytest.fixture(autouse=True)
def _services_for_markers(request):
    if request.node.get_closest_marker("postgres"):
        request.getfixturevalue("require_postgres")
    if request.node.get_closest_marker("redis"):
        request.getfixturevalue("redis_url")

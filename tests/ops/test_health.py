"""/healthz and /readyz (issue #18 item 1): liveness answers any host; readiness names what fails."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client

from violet_refunds import beat, health

pytestmark = pytest.mark.django_db


@pytest.fixture
def production_hosts(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["refunds.example.com"]
    settings.SECURE_SSL_REDIRECT = True


@pytest.fixture
def live_broker(settings, redis_url):
    """Readiness as a deployment with a broker sees it (the suite runs tasks eagerly otherwise)."""
    settings.REDIS_URL = redis_url
    settings.CELERY_BROKER_URL = redis_url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    return redis_url


def test_healthz_answers_a_probe_by_pod_ip_with_debug_off(production_hosts):
    response = Client().get("/healthz", HTTP_HOST="10.12.0.7:8000")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_other_paths_still_refuse_an_unknown_host(production_hosts):
    response = Client().get("/portal/login/", HTTP_HOST="10.12.0.7:8000")

    assert response.status_code == 400


def test_readyz_answers_any_host_over_plain_http(production_hosts, live_broker):
    beat.heartbeat_write()

    response = Client().get("/readyz", HTTP_HOST="10.12.0.7")

    assert response.status_code == 200  # neither the HTTPS redirect (301) nor a bad host (400)


def test_readyz_ok_lists_every_check(live_broker):
    beat.heartbeat_write()

    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "migrations", "broker", "beat", "encryption"}
    assert all(check["ok"] for check in body["checks"].values())
    assert not any(check.get("skipped") for check in body["checks"].values())


def test_readyz_names_the_broker_when_redis_is_unreachable(settings):
    unreachable = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.REDIS_URL = unreachable
    settings.CELERY_BROKER_URL = unreachable
    settings.CELERY_TASK_ALWAYS_EAGER = False

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert "broker" in body["failing"]
    assert body["checks"]["broker"] == {"ok": False, "detail": "ConnectionError (see the log)"}
    assert body["checks"]["database"]["ok"] is True
    assert "127.0.0.1:1" not in response.content.decode()  # the public answer names no address


def test_readyz_names_an_unapplied_migration(live_broker):
    beat.heartbeat_write()
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("DELETE FROM django_migrations WHERE app = %s AND name = %s", ["refunds", "0001_initial"])

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"]["migrations"]["detail"] == "1 migration(s) not applied: refunds.0001_initial"


def test_readyz_names_beat_when_its_heartbeat_is_stale(live_broker, settings):
    settings.READYZ_BEAT_MAX_AGE_SECONDS = 60
    beat.heartbeat_write(now=time.time() - 600)

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["beat"]


def test_readyz_names_beat_when_there_is_no_heartbeat(live_broker):
    import redis

    redis.Redis.from_url(live_broker).delete(beat.HEARTBEAT_KEY)

    body = Client().get("/readyz").json()

    assert body["failing"] == ["beat"]
    assert body["checks"]["beat"]["detail"].startswith("no heartbeat")


def test_a_skipped_check_is_reported_as_skipped(live_broker, settings):
    settings.READYZ_SKIP_CHECKS = ["beat"]
    import redis

    redis.Redis.from_url(live_broker).delete(beat.HEARTBEAT_KEY)

    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["beat"] == {"ok": True, "detail": "skipped by READYZ_SKIP_CHECKS", "skipped": True}


def test_without_a_broker_broker_and_beat_are_skipped(settings):
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "memory://"
    settings.CELERY_TASK_ALWAYS_EAGER = True

    body = Client().get("/readyz").json()

    assert body["status"] == "ok"
    assert body["checks"]["broker"]["skipped"] is True
    assert body["checks"]["beat"]["skipped"] is True


def test_readyz_names_encryption_when_the_key_does_not_load(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    settings.READYZ_SKIP_CHECKS = ["broker", "beat"]

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["encryption"]


def test_the_beat_scheduler_writes_a_heartbeat_on_its_tick(live_broker, tmp_path):
    import redis

    from violet_refunds.celery import app

    redis.Redis.from_url(live_broker).delete(beat.HEARTBEAT_KEY)
    scheduler = beat.HeartbeatScheduler(app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    scheduler.setup_schedule()

    interval = scheduler.tick()

    assert interval <= beat.HEARTBEAT_INTERVAL_SECONDS
    age = beat.heartbeat_age_seconds()
    assert age is not None and 0 <= age < 30
    assert health.check_beat().ok
    scheduler.close()


def test_with_debug_off_the_probes_come_first_and_whitenoise_serves_static_files():
    """Settings are read once per process: a fresh interpreter with a production environment."""
    import json
    import os
    import subprocess
    import sys

    from cryptography.fernet import Fernet
    from django.conf import settings

    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
        "DEBUG": "false",
        "SECRET_KEY": "x" * 60,
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "STRIPE_SANDBOX_ALLOWED": "true",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/violet",
    }
    script = "import json, django; django.setup(); from django.conf import settings as s; "
    script += "print(json.dumps({'middleware': s.MIDDLEWARE, 'log_format': s.LOG_FORMAT}))"
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout.strip().splitlines()[-1])

    assert reported["middleware"][:5] == [
        "violet_refunds.health.ProbeHostMiddleware",
        "violet_refunds.logs.RequestIdMiddleware",
        "violet_refunds.metrics.RequestLatencyMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
    ]
    assert reported["log_format"] == "json"

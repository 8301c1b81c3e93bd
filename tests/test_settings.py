"""Settings come from the environment: with none the project runs on embedded defaults; in production
shape (DEBUG off) it refuses to start without its secrets, with a message saying what is missing.

Each case starts a fresh interpreter with exactly the given environment, since settings are read
once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

PROJECT_ROOT = Path(__file__).resolve().parent.parent

REPORT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
from violet_refunds.celery import app
print(json.dumps({
    "DEBUG": s.DEBUG,
    "ENGINE": s.DATABASES["default"]["ENGINE"],
    "DB_NAME": str(s.DATABASES["default"]["NAME"]),
    "CONN_MAX_AGE": s.DATABASES["default"].get("CONN_MAX_AGE"),
    "CELERY_TASK_ALWAYS_EAGER": s.CELERY_TASK_ALWAYS_EAGER,
    "celery_task_always_eager": app.conf.task_always_eager,
    "CELERY_BROKER_URL": s.CELERY_BROKER_URL,
    "STRIPE_API_KEY": s.STRIPE_API_KEY,
    "SECRET_KEY_SET": bool(s.SECRET_KEY),
    "FIELD_ENCRYPTION_KEYS": s.FIELD_ENCRYPTION_KEYS,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
}))
"""


def _start_django(**environment):
    """Run REPORT_SETTINGS under a clean environment holding only `environment` (and PATH)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "violet_refunds.settings"}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", REPORT_SETTINGS],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _settings_of(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def production_key():
    return Fernet.generate_key().decode()


def test_no_environment_at_all_runs_on_embedded_defaults():
    settings = _settings_of(_start_django())
    assert settings["DEBUG"] is True
    assert settings["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["DB_NAME"] == str(PROJECT_ROOT / "db.sqlite3")
    assert settings["CELERY_TASK_ALWAYS_EAGER"] is True
    assert settings["celery_task_always_eager"] is True
    assert settings["CELERY_BROKER_URL"] == "memory://"
    assert settings["STRIPE_API_KEY"] == ""  # the Stripe sandbox
    assert settings["SECRET_KEY_SET"] is True
    assert len(settings["FIELD_ENCRYPTION_KEYS"]) == 1


@pytest.mark.parametrize("debug_off", ["false", "False", "0", "off"])
def test_debug_off_without_secret_key_refuses_to_start(debug_off):
    result = _start_django(DEBUG=debug_off)
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: SECRET_KEY is not set." in result.stderr


def test_debug_off_without_field_encryption_key_refuses_to_start():
    result = _start_django(DEBUG="false", SECRET_KEY="a-production-secret-key-of-sufficient-length")
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: FIELD_ENCRYPTION_KEY is not set." in result.stderr
    assert "Fernet.generate_key()" in result.stderr  # the message says how to make one


def test_debug_off_with_its_secrets_starts_in_production_shape(production_key):
    old_key = Fernet.generate_key().decode()
    settings = _settings_of(
        _start_django(
            DEBUG="false",
            SECRET_KEY="a-production-secret-key-of-sufficient-length",
            FIELD_ENCRYPTION_KEY=f"{production_key},{old_key}",
            DATABASE_URL="postgres://refunds@db.internal:5432/refunds",
            REDIS_URL="redis://cache.internal:6379/0",
            STRIPE_API_KEY="sk_test_example",
        )
    )
    assert settings["DEBUG"] is False
    assert settings["ENGINE"] == "django.db.backends.postgresql"
    assert settings["CONN_MAX_AGE"] == 60
    assert settings["CELERY_TASK_ALWAYS_EAGER"] is False
    assert settings["celery_task_always_eager"] is False
    assert settings["CELERY_BROKER_URL"] == "redis://cache.internal:6379/0"
    assert settings["STRIPE_API_KEY"] == "sk_test_example"
    assert settings["FIELD_ENCRYPTION_KEYS"] == [production_key, old_key]  # newest first
    assert settings["SESSION_COOKIE_SECURE"] is True

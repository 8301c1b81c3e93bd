"""Production guardrails (issue #16, item 1).

With DEBUG off the settings refuse to start (ImproperlyConfigured, every process: web, workers, beat,
management commands) on the Stripe sandbox without STRIPE_SANDBOX_ALLOWED, without a broker, on
SQLite, or with the development keys; `manage.py check --deploy` reports the same as errors
violet.E001-E005. A production-like environment passes `check --deploy --fail-level WARNING` (as CI
runs it, .ci/run). Each case starts a fresh interpreter with exactly the given environment, since
settings are read once per process; nothing here needs the network (no database is opened).
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from violet_refunds import checks, deployment

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _production(**overrides) -> dict:
    """A correctly configured production environment (no network needed to start or check it)."""
    environment = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "STRIPE_API_KEY": "sk_test_dummy_for_checks",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgres://refunds@db.internal:5432/refunds",
        "ALLOWED_HOSTS": "refunds.example.com",
    }
    environment.update(overrides)
    return {key: value for key, value in environment.items() if value is not None}


def _run(args: list[str], environment: dict) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "violet_refunds.settings"}
    env.update(environment)
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _start(environment: dict) -> subprocess.CompletedProcess:
    return _run(["-c", "import django; django.setup(); print('started')"], environment)


def test_a_production_like_environment_passes_check_deploy_at_warning_level():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], _production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_defaults_are_the_secure_ones():
    shown = _run(
        [
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
            "s.SECURE_HSTS_PRELOAD, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)",
        ],
        _production(),
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n")[-2] == "True 31536000 True True True True ('HTTP_X_FORWARDED_PROTO', 'https')"


def test_security_settings_are_read_from_the_environment():
    shown = _run(
        [
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)",
        ],
        _production(SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="3600", USE_X_FORWARDED_PROTO="false"),
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n")[-2] == "False 3600 None"


def test_a_weakened_production_fails_check_deploy_at_warning_level():
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        _production(SECURE_HSTS_SECONDS="0", SESSION_COOKIE_SECURE="false"),
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "check_id", "says"),
    [
        (
            {"STRIPE_API_KEY": None},
            "violet.E001",
            "STRIPE_API_KEY is not set: refunds would run on the built-in Stripe sandbox",
        ),
        ({"REDIS_URL": None}, "violet.E002", "REDIS_URL is not set: without a broker tasks run inside web requests"),
        ({"DATABASE_URL": None}, "violet.E003", "The database is SQLite"),
        ({"DATABASE_URL": "sqlite:////tmp/refunds.sqlite3"}, "violet.E003", "The database is SQLite"),
        ({"SECRET_KEY": deployment.DEV_SECRET_KEY}, "violet.E004", "SECRET_KEY is the development key"),
        (
            {"FIELD_ENCRYPTION_KEY": deployment.DEV_FIELD_ENCRYPTION_KEY},
            "violet.E005",
            "FIELD_ENCRYPTION_KEY contains the development key",
        ),
        (
            {"FIELD_ENCRYPTION_KEY": f"{Fernet.generate_key().decode()},{deployment.DEV_FIELD_ENCRYPTION_KEY}"},
            "violet.E005",
            "FIELD_ENCRYPTION_KEY contains the development key",
        ),
    ],
    ids=[
        "no-stripe-key",
        "no-broker",
        "sqlite-default",
        "sqlite-url",
        "dev-secret-key",
        "dev-fernet-key",
        "dev-fernet-old",
    ],
)
def test_debug_off_refuses_to_start(overrides, check_id, says):
    result = _start(_production(**overrides))

    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: DEBUG is off and this deployment is not fit" in result.stderr
    assert f"[{check_id}] {says}" in result.stderr
    assert result.stderr.count("[violet.E") == 1  # only what is wrong


def test_every_problem_is_named_at_once():
    result = _start(
        {
            "DEBUG": "false",
            "SECRET_KEY": deployment.DEV_SECRET_KEY,
            "FIELD_ENCRYPTION_KEY": deployment.DEV_FIELD_ENCRYPTION_KEY,
        }
    )
    assert result.returncode != 0
    for check_id in ("E001", "E002", "E003", "E004", "E005"):
        assert f"[violet.{check_id}]" in result.stderr


def test_staging_may_run_on_the_sandbox_when_it_says_so():
    result = _start(_production(STRIPE_API_KEY=None, STRIPE_SANDBOX_ALLOWED="true"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("started")


def test_debug_on_starts_on_every_embedded_default():
    """make run and the tests: nothing to configure."""
    result = _start({})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"STRIPE_API_VERSION": "latest"}, "STRIPE_API_VERSION 'latest' is not a Stripe API version"),
        ({"STRIPE_IDEMPOTENCY_PREFIX": "has space"}, "STRIPE_IDEMPOTENCY_PREFIX 'has space' is not usable"),
    ],
)
def test_unusable_stripe_settings_refuse_to_start(overrides, says):
    result = _start(overrides)  # DEBUG on: refused in every mode
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {says}" in result.stderr


# --- The same guardrails as `check --deploy` errors, in-process (settings overridden) ---


def _production_settings(settings, monkeypatch):
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.STRIPE_API_KEY = "sk_live_dummy"
    settings.STRIPE_SANDBOX_ALLOWED = False
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    # The engine as the check reads it (overriding DATABASES itself would disturb the test database).
    monkeypatch.setattr(checks, "_database_engine", lambda: "django.db.backends.postgresql")


def test_the_guardrail_check_is_quiet_on_production_settings(settings, monkeypatch):
    _production_settings(settings, monkeypatch)
    assert checks.check_production_guardrails(None) == []
    assert checks.check_stripe_key_kind(None) == []


@pytest.mark.parametrize(
    ("change", "check_id"),
    [
        ({"STRIPE_API_KEY": ""}, "violet.E001"),
        ({"REDIS_URL": ""}, "violet.E002"),
        ({"SECRET_KEY": deployment.DEV_SECRET_KEY}, "violet.E004"),
        ({"FIELD_ENCRYPTION_KEYS": [deployment.DEV_FIELD_ENCRYPTION_KEY]}, "violet.E005"),
    ],
)
def test_check_deploy_reports_each_guardrail(settings, monkeypatch, change, check_id):
    _production_settings(settings, monkeypatch)
    for name, value in change.items():
        setattr(settings, name, value)

    found = checks.check_production_guardrails(None)

    assert [(type(e), e.id) for e in found] == [(Error, check_id)]
    assert found[0].hint
    with pytest.raises(SystemCheckError, match=check_id):
        call_command("check", deploy=True, tags=["security"])


def test_check_deploy_reports_sqlite(settings, monkeypatch):
    _production_settings(settings, monkeypatch)
    monkeypatch.setattr(checks, "_database_engine", lambda: "django.db.backends.sqlite3")
    assert [e.id for e in checks.check_production_guardrails(None)] == ["violet.E003"]


def test_the_sandbox_allowed_is_no_error(settings, monkeypatch):
    _production_settings(settings, monkeypatch)
    settings.STRIPE_API_KEY = ""
    settings.STRIPE_SANDBOX_ALLOWED = True
    assert checks.check_production_guardrails(None) == []


def test_a_key_of_no_known_prefix_is_a_warning(settings):
    settings.STRIPE_API_KEY = "pk_live_publishable"
    assert [(type(w), w.id) for w in checks.check_stripe_key_kind(None)] == [(Warning, "violet.W001")]


def test_an_api_version_other_than_the_sdks_is_a_warning(settings):
    assert checks.check_stripe_api_version(None) == []
    settings.STRIPE_API_VERSION = "2025-09-30.clover"
    assert [w.id for w in checks.check_stripe_api_version(None)] == ["violet.W002"]


def test_the_guardrails_are_deploy_checks():
    from django.core.checks import registry

    deploy_only = registry.registry.get_checks(include_deployment_checks=True)
    assert checks.check_production_guardrails in deploy_only
    assert checks.check_production_guardrails not in registry.registry.get_checks(include_deployment_checks=False)

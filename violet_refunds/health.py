"""Liveness (/healthz) and readiness (/readyz).

/healthz says only that the process answers: no database, no broker, so a dependency's outage never
makes an orchestrator restart every web process. /readyz runs each check below and answers 200 when
all pass, 503 naming the failing ones; either way the body lists every check's result.

Both (and /metrics) answer whatever the Host header says: `ProbeHostMiddleware` serves them before
Django validates the host, because probes and scrapers reach a pod by its IP. They never build a URL
from the host, which is what ALLOWED_HOSTS protects against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from violet_refunds import beat, crypto

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    skipped: bool = False

    def as_dict(self) -> dict:
        return {"ok": self.ok, "detail": self.detail, **({"skipped": True} if self.skipped else {})}


def _passed(detail: str) -> CheckResult:
    return CheckResult(True, detail)


def _failed(detail: str) -> CheckResult:
    return CheckResult(False, detail)


def check_database() -> CheckResult:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return _passed(f"{connection.vendor} answers")


@lru_cache(maxsize=1)
def _migrations_on_disk() -> frozenset[tuple[str, str]]:
    # Reading the migration files is the expensive part and cannot change while the process runs.
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def check_migrations() -> CheckResult:
    applied = set(MigrationRecorder(connection).applied_migrations())
    missing = sorted(_migrations_on_disk() - applied)
    if missing:
        names = ", ".join(f"{app}.{name}" for app, name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return _failed(f"{len(missing)} migration(s) not applied: {names}{more}")
    return _passed("all applied")


def broker_is_configured() -> bool:
    is_redis = str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://"))
    return is_redis and not settings.CELERY_TASK_ALWAYS_EAGER


def check_broker() -> CheckResult:
    if not broker_is_configured():
        return CheckResult(True, "no broker: tasks run in-process", skipped=True)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)
    with client:
        client.ping()
    return _passed("redis answers")


def check_beat() -> CheckResult:
    if not broker_is_configured():
        return CheckResult(True, "no broker: nothing is scheduled", skipped=True)
    age = beat.heartbeat_age_seconds()
    if age is None:
        return _failed("no heartbeat from celery beat (is exactly one beat running?)")
    if age > settings.READYZ_BEAT_MAX_AGE_SECONDS:
        return _failed(f"last heartbeat {age:.0f} s ago (> {settings.READYZ_BEAT_MAX_AGE_SECONDS} s)")
    return _passed(f"last heartbeat {age:.0f} s ago")


def check_encryption() -> CheckResult:
    probe = "readyz"
    if crypto.decrypt_str(crypto.encrypt_str(probe)) != probe:
        return _failed("FIELD_ENCRYPTION_KEY does not round-trip")
    return _passed(f"{len(settings.FIELD_ENCRYPTION_KEYS)} key(s) load")


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
    "beat": check_beat,
    "encryption": check_encryption,
}


def readiness() -> dict[str, CheckResult]:
    results = {}
    skipped = set(settings.READYZ_SKIP_CHECKS)
    for name, check in CHECKS.items():
        if name in skipped:
            results[name] = CheckResult(True, "skipped by READYZ_SKIP_CHECKS", skipped=True)
            continue
        try:
            results[name] = check()
        except Exception as exc:  # a check that raises has failed
            # The answer is public: it names the exception; the message (hosts, ports) goes to the log.
            logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = _failed(f"{type(exc).__name__} (see the log)")
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    results = readiness()
    failing = [name for name, result in results.items() if not result.ok]
    body = {
        "status": "failing" if failing else "ok",
        "failing": failing,
        "checks": {name: result.as_dict() for name, result in results.items()},
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=503 if failing else 200)


# Views served to any Host (see the module docstring), by URL name.
PROBE_URL_NAMES = frozenset({"healthz", "readyz", "metrics"})
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ProbeHostMiddleware:
    """First in MIDDLEWARE: serves the probe views itself, before SecurityMiddleware (no HTTPS
    redirect) and CommonMiddleware (no ALLOWED_HOSTS check) see the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in PROBE_PATHS:
            try:
                match = resolve(request.path_info)
            except Resolver404:
                return self.get_response(request)
            if match.url_name in PROBE_URL_NAMES:
                request.resolver_match = match
                return match.func(request, *match.args, **match.kwargs)
        return self.get_response(request)

"""What shape this deployment is in, decided from plain values (no Django settings access here).

`violet_refunds.settings` calls `production_problems` while it is being read, so a process with
DEBUG off refuses to start (web, workers, beat and every management command alike), and
`violet_refunds.checks` reports the same problems as `manage.py check --deploy` errors. One list,
two places it is enforced.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

# Embedded development defaults: acceptable only while DEBUG is on (settings uses them then).
DEV_SECRET_KEY = "dev-insecure-violet-refunds-secret-key-do-not-use-in-production"
DEV_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktdmlvbGV0LXJlZnVuZHMta2V5LTMyYiE="

SQLITE_ENGINE = "django.db.backends.sqlite3"

STRIPE_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")
STRIPE_LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")

SANDBOX, TEST, LIVE, UNKNOWN = "SANDBOX", "TEST", "LIVE", "UNKNOWN"


def stripe_mode(api_key: str) -> str:
    """Which money the product moves: SANDBOX (no key: the built-in sandbox, no money at all),
    TEST (Stripe test mode), LIVE (real money), UNKNOWN (a key of no known prefix)."""
    if not api_key:
        return SANDBOX
    if api_key.startswith(STRIPE_TEST_KEY_PREFIXES):
        return TEST
    if api_key.startswith(STRIPE_LIVE_KEY_PREFIXES):
        return LIVE
    return UNKNOWN


# --- Idempotency keys sent to Stripe ---

IDEMPOTENCY_PREFIX_MAX_LENGTH = 64
_PREFIX_ALLOWED = re.compile(r"[^A-Za-z0-9_.-]+")


def _slug(value: str) -> str:
    return _PREFIX_ALLOWED.sub("-", value).strip("-")[:IDEMPOTENCY_PREFIX_MAX_LENGTH]


def default_idempotency_prefix(database: dict, deployment_id: str = "") -> str:
    """The namespace of this deployment's Stripe idempotency keys: DEPLOYMENT_ID when set, else the
    database's name (deployments that share a Stripe account never share a database). A SQLite file
    adds a short hash of its absolute path (every laptop's file is called db.sqlite3)."""
    if deployment_id.strip():
        return _slug(deployment_id.strip()) or "deployment"
    name = str(database.get("NAME") or "")
    if database.get("ENGINE") == SQLITE_ENGINE:
        if not name or name == ":memory:" or name.startswith("file:"):
            return "sqlite-memory"
        path = str(Path(name).resolve())
        return f"{_slug(Path(name).stem) or 'sqlite'}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"
    return _slug(name) or "violet"


def idempotency_prefix_problem(prefix: str) -> str | None:
    if not prefix or _PREFIX_ALLOWED.search(prefix) or len(prefix) > IDEMPOTENCY_PREFIX_MAX_LENGTH:
        return (
            f"STRIPE_IDEMPOTENCY_PREFIX {prefix!r} is not usable: 1 to {IDEMPOTENCY_PREFIX_MAX_LENGTH} characters "
            "among letters, digits, '_', '.' and '-'."
        )
    return None


_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z_]+)?$")


def api_version_problem(version: str) -> str | None:
    if not _API_VERSION.match(version):
        return (
            f"STRIPE_API_VERSION {version!r} is not a Stripe API version (YYYY-MM-DD or YYYY-MM-DD.name, "
            "e.g. 2026-10-28.endive)."
        )
    return None


def sandbox_url_problem(api_key: str, sandbox_url: str) -> str | None:
    """STRIPE_SANDBOX_URL (the sandbox in its own process) is for the sandbox only: with a real key
    it would send that key, and real-money requests, to a server that is not Stripe."""
    if not sandbox_url:
        return None
    if api_key:
        return (
            "STRIPE_SANDBOX_URL is set together with STRIPE_API_KEY: the sandbox's HTTP server is for runs "
            "without a Stripe key (benchmarks); unset one of them."
        )
    if not sandbox_url.startswith(("http://", "https://")):
        return f"STRIPE_SANDBOX_URL {sandbox_url!r} is not an http(s):// URL."
    return None


# --- Production guardrails ---


@dataclass(frozen=True)
class Problem:
    id: str  # the system check id (violet.E00n)
    message: str
    hint: str


def production_problems(
    *,
    secret_key: str,
    field_encryption_keys: list[str],
    stripe_api_key: str,
    stripe_sandbox_allowed: bool,
    redis_url: str,
    database_engine: str,
) -> list[Problem]:
    """Everything that makes this configuration unfit to run with DEBUG off (empty: fit)."""
    problems = []
    if not stripe_api_key and not stripe_sandbox_allowed:
        problems.append(
            Problem(
                "violet.E001",
                "STRIPE_API_KEY is not set: refunds would run on the built-in Stripe sandbox, be reported "
                "COMPLETED to channels and move no money.",
                "Set STRIPE_API_KEY (sk_live_/rk_live_ in production), or STRIPE_SANDBOX_ALLOWED=true for a "
                "staging deployment that must run on the sandbox.",
            )
        )
    if not redis_url:
        problems.append(
            Problem(
                "violet.E002",
                "REDIS_URL is not set: without a broker tasks run inside web requests and beat schedules "
                "nothing (no sweeps, no webhook relay, no inbound requeue).",
                "Set REDIS_URL=redis://host:6379/0 and run workers and one beat.",
            )
        )
    if database_engine == SQLITE_ENGINE:
        problems.append(
            Problem(
                "violet.E003",
                "The database is SQLite (DATABASE_URL is not set, or sqlite://): the advisory locks that keep "
                "refund processing exclusive exist on PostgreSQL only.",
                "Set DATABASE_URL=postgres://user@host:5432/name.",
            )
        )
    if secret_key == DEV_SECRET_KEY:
        problems.append(
            Problem(
                "violet.E004",
                "SECRET_KEY is the development key embedded in the source code.",
                "Set SECRET_KEY to a long random string of your own (50+ characters), e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
            )
        )
    if DEV_FIELD_ENCRYPTION_KEY in field_encryption_keys:
        problems.append(
            Problem(
                "violet.E005",
                "FIELD_ENCRYPTION_KEY contains the development key embedded in the source code: anyone could "
                "decrypt store credentials and webhook secrets encrypted with it.",
                "Generate a key with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`.",
            )
        )
    return problems


def refusal_message(problems: list[Problem]) -> str:
    lines = [f"DEBUG is off and this deployment is not fit for production ({len(problems)} problem(s)):"]
    lines += [f"- [{p.id}] {p.message} {p.hint}" for p in problems]
    return "\n".join(lines)

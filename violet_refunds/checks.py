"""System checks of the deployment (registered by violet_refunds.apps.VioletAdminConfig.ready()).

Tagged `deploy` (run by `manage.py check --deploy`, CI runs it with a production-like environment):
- violet.E001-E005, the production guardrails of violet_refunds.deployment: the Stripe sandbox
  without STRIPE_SANDBOX_ALLOWED, no broker, SQLite, the development SECRET_KEY or FIELD_ENCRYPTION_KEY.
  With DEBUG off settings already refuse to start on them; the checks say the same thing about any
  configuration `check --deploy` is asked to judge (DEBUG on included, as Django's own do).
- violet.W001: a STRIPE_API_KEY of no known prefix (neither a test nor a live key).

Always run:
- violet.W002: STRIPE_API_VERSION differs from the version the installed stripe-python is built for.
"""

from __future__ import annotations

import stripe
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from violet_refunds import deployment


def _database_engine() -> str:
    return settings.DATABASES["default"]["ENGINE"]


@register(Tags.security, deploy=True)
def check_production_guardrails(app_configs, **kwargs):
    problems = deployment.production_problems(
        secret_key=settings.SECRET_KEY,
        field_encryption_keys=list(settings.FIELD_ENCRYPTION_KEYS),
        stripe_api_key=settings.STRIPE_API_KEY,
        stripe_sandbox_allowed=settings.STRIPE_SANDBOX_ALLOWED,
        redis_url=settings.REDIS_URL,
        database_engine=_database_engine(),
    )
    return [Error(problem.message, hint=problem.hint, id=problem.id) for problem in problems]


@register(Tags.security, deploy=True)
def check_stripe_key_kind(app_configs, **kwargs):
    if deployment.stripe_mode(settings.STRIPE_API_KEY) == deployment.UNKNOWN:
        return [
            Warning(
                "STRIPE_API_KEY is neither a test key (sk_test_, rk_test_) nor a live key (sk_live_, rk_live_).",
                hint="Use a secret or restricted key from the Stripe Dashboard (API keys).",
                id="violet.W001",
            )
        ]
    return []


@register()
def check_stripe_api_version(app_configs, **kwargs):
    sdk_version = stripe.api_version
    if sdk_version != settings.STRIPE_API_VERSION:
        return [
            Warning(
                f"STRIPE_API_VERSION is {settings.STRIPE_API_VERSION} but the installed stripe-python is built "
                f"for {sdk_version}: responses may carry fields the SDK does not expect.",
                hint="Change STRIPE_API_VERSION and the SDK together, after reading Stripe's upgrade notes.",
                id="violet.W002",
            )
        ]
    return []

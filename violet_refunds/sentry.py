"""Error tracking: sentry-sdk, switched on by SENTRY_DSN (settings call `init`), with the Django,
Celery and Redis integrations, and `scrub_event` as before_send: no secret of ours, of a channel or of
a merchant's store ever leaves in an event.

What is scrubbed, wherever it appears in the event (request headers, cookies, body, local variables
of stack frames, breadcrumbs, extra, contexts):
- values under a sensitive name: our channel API's secrets (X-Violet-App-Secret, X-Violet-Token,
  X-Violet-Hmac), the platforms' signature headers (X-Shopify-Hmac-Sha256, X-WC-Webhook-Signature,
  X-Ecwid-Webhook-Signature, BigCommerce's Authorization bearer, X-Auth-Token, X-Shopify-Access-Token),
  Stripe-Signature, Authorization, Cookie, and store credentials (access_token, api_key,
  client_secret, consumer_secret, webhook_secret, signing_secret, password, ...);
- values that look like a secret whatever their name: Stripe keys (sk_/rk_/whsec_), merchant API
  keys (vrk_), bearer tokens.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

FILTERED = "[Filtered]"

# Compared after lower-casing and turning "-" into "_" (headers arrive as X-Violet-App-Secret in the
# request, HTTP_X_VIOLET_APP_SECRET in a META dict, x_violet_app_secret elsewhere).
SENSITIVE_NAMES = frozenset(
    {
        "x_violet_app_secret",
        "x_violet_token",
        "x_violet_hmac",
        "x_shopify_hmac_sha256",
        "x_shopify_access_token",
        "x_wc_webhook_signature",
        "x_ecwid_webhook_signature",
        "x_auth_token",
        "stripe_signature",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_csrftoken",
        "csrfmiddlewaretoken",
        "sessionid",
        "csrftoken",
        # store credentials, channel endpoints' and stores' webhook secrets, logins
        "credentials",
        "access_token",
        "refresh_token",
        "api_key",
        "client_secret",
        "consumer_key",
        "consumer_secret",
        "webhook_secret",
        "signing_secret",
        "secret",
        "secret_key",
        "password",
        "password1",
        "password2",
        "token",
        "private_key",
        "field_encryption_key",
        "field_encryption_keys",
        "stripe_api_key",
    }
)
_META_PREFIX = "http_"
_SECRET_VALUE = re.compile(
    r"(?:\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+|\bvrk_[A-Za-z0-9_-]+|\bBearer\s+\S+)"
)

# A sensitive parameter inside a URL written in a string (a request's repr in a frame's variables).
_SECRET_PARAMETER = re.compile(
    r"([?&](?:" + "|".join(sorted(SENSITIVE_NAMES, key=len, reverse=True)) + r")=)[^&\s'\"]*", re.IGNORECASE
)


def _is_sensitive(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    key = name.lower().replace("-", "_")
    if key.startswith(_META_PREFIX):
        key = key[len(_META_PREFIX) :]
    return key in SENSITIVE_NAMES


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 20:
        return value
    if isinstance(value, dict):
        return {key: FILTERED if _is_sensitive(key) else _scrub(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        # Headers may come as [name, value] pairs.
        if len(value) == 2 and _is_sensitive(value[0]):
            return [value[0], FILTERED]
        return [_scrub(item, depth + 1) for item in value]
    if isinstance(value, str):
        return _SECRET_PARAMETER.sub(rf"\1{FILTERED}", _SECRET_VALUE.sub(FILTERED, value))
    return value


def _scrub_query_string(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, FILTERED if _is_sensitive(name) else _scrub(value)) for name, value in pairs])


def scrub_event(event: Any, hint: Any = None) -> Any:
    """before_send / before_send_transaction: the event with every secret replaced by [Filtered]."""
    scrubbed = _scrub(event)
    request = scrubbed.get("request")
    if isinstance(request, dict) and isinstance(request.get("query_string"), str):
        request["query_string"] = _scrub_query_string(request["query_string"])
    return scrubbed


def init(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=False), RedisIntegration()],
        # send_default_pii stays at its default (off): no user names, e-mails or IP addresses.
        max_request_body_size="never",  # webhook bodies carry shoppers' data: never sent
        traces_sample_rate=traces_sample_rate,
        before_send=scrub_event,
        before_send_transaction=scrub_event,
    )

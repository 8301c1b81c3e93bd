"""Rate limits: logins (per client IP and per username, on every face) and API credentials.

One counter implementation for all: a fixed window per (scope, identity) in Django's default cache
(`cache.add` + `cache.incr`, atomic on Redis and on the local-memory cache), so every web process
shares the counts when CACHES points at Redis (settings: whenever REDIS_URL is set).

- Logins: `LoginThrottleBackend` is the first authentication backend, so every call of Django's
  `authenticate()` counts: the channel API's `POST /v1/login`, the portal's and the admin's login
  forms. Over a limit it refuses before any password is checked and marks the request; the API
  answers 429 in its error shape, and `LoginThrottleMiddleware` turns the portal's and admin's
  answer into a 429 page. Both carry `Retry-After`.
- API credentials: `CredentialRateThrottle` (DRF's default throttle) counts per channel app and
  per merchant API key, after authentication; `WebhookTestRateThrottle` adds a tighter count of the
  test events an app asks for (each is an outbound POST).
- The client's IP: `client_ip()`, REMOTE_ADDR unless TRUSTED_PROXY_COUNT says how many proxies of
  ours append to X-Forwarded-For (then the address the outermost of them saw). django-axes uses the
  same function.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.loader import render_to_string
from rest_framework.throttling import BaseThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int


def rate_parse(rate: str | None) -> Rate | None:
    """ "20/m", "1200/min", "5/10m", "100/s"; empty, "0" or "none": no limit."""
    if not rate or str(rate).strip().lower() in {"0", "none", "off"}:
        return None
    count, _, period = str(rate).strip().partition("/")
    period = period.strip().lower() or "s"
    digits = "".join(ch for ch in period if ch.isdigit())
    unit = period[len(digits) :][:1]
    if unit not in _PERIODS:
        raise ValueError(f"Unknown rate period in {rate!r} (use s, m, h or d).")
    return Rate(limit=int(count), seconds=int(digits or 1) * _PERIODS[unit])


def _key(scope: str, identity: str, window: int) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"throttle:{scope}:{digest}:{window}"


def rate_hit(scope: str, identity: str, rate: Rate | None) -> float | None:
    """Count one hit; None while within the limit, else the seconds until the window ends."""
    if rate is None:
        return None
    now = time.time()
    window = int(now // rate.seconds)
    key = _key(scope, identity, window)
    cache.add(key, 0, timeout=rate.seconds + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=rate.seconds + 1)
        count = 1
    if count <= rate.limit:
        return None
    return max(1.0, (window + 1) * rate.seconds - now)


# --- the client's address ------------------------------------------------------------------------


def client_ip(request) -> str:
    """REMOTE_ADDR; behind TRUSTED_PROXY_COUNT proxies of ours, the address the outermost one saw
    (the N-th X-Forwarded-For entry from the right). X-Forwarded-For is never trusted by default:
    any client can write it."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    count = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < count:
        return remote  # fewer hops than our proxies: not a request that came through them all
    candidate = forwarded[-count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


# --- logins --------------------------------------------------------------------------------------

LOGIN_THROTTLED_ATTRIBUTE = "login_throttled_wait"


def login_attempt_check(request, username: str) -> float | None:
    """Count one login attempt for the client's IP and for the username; the wait when over either."""
    ip_wait = rate_hit("login-ip", client_ip(request), rate_parse(settings.LOGIN_RATE_PER_IP))
    user_wait = rate_hit("login-user", username.strip().lower(), rate_parse(settings.LOGIN_RATE_PER_USERNAME))
    waits = [w for w in (ip_wait, user_wait) if w is not None]
    return max(waits) if waits else None


class LoginThrottleBackend:
    """First in AUTHENTICATION_BACKENDS: refuses (PermissionDenied stops Django's authenticate())
    when the client's IP or the username is over its login rate; otherwise lets the next backend
    decide. It never authenticates anyone itself."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or username is None:
            return None
        wait = login_attempt_check(request, str(username))
        if wait is not None:
            setattr(request, LOGIN_THROTTLED_ATTRIBUTE, wait)
            raise PermissionDenied("Too many login attempts.")
        return None

    def get_user(self, user_id):
        # Sessions name the backend that logged the user in; `force_login` and the like pick the
        # first configured one (this): the user is ModelBackend's, read the same way.
        return ModelBackend().get_user(user_id)


def login_throttled_wait(request) -> float | None:
    """The wait if this request's login was refused by the throttle (and forget it: handled)."""
    wait = getattr(request, LOGIN_THROTTLED_ATTRIBUTE, None)
    if wait is not None:
        setattr(request, LOGIN_THROTTLED_ATTRIBUTE, None)
    return wait


class LoginThrottleMiddleware:
    """The portal's and the admin's login pages: a throttled attempt answers 429 with Retry-After."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        wait = login_throttled_wait(request)
        if wait is None or response.status_code == 429:
            return response
        seconds = math.ceil(wait)
        throttled = HttpResponse(
            render_to_string("throttled.html", {"retry_after": seconds}, request=request), status=429
        )
        throttled["Retry-After"] = str(seconds)
        return throttled


# --- API credentials -----------------------------------------------------------------------------


class CredentialRateThrottle(BaseThrottle):
    """Per credential, after authentication: a channel app (API_RATE_LIMIT) or a merchant API key
    (NOTICE_API_RATE_LIMIT). Requests without a credential are not counted here (they fail
    authentication, or are login, which has its own limits)."""

    def __init__(self):
        self._wait: float | None = None

    def _scope(self, request) -> tuple[str, str, str | None] | None:
        credential = getattr(request, "auth", None)
        if credential is None:
            return None
        app = getattr(credential, "app", None)
        if app is not None and getattr(credential, "user", None) is not None:
            return "api-app", str(app.pk), settings.API_RATE_LIMIT
        if type(credential).__name__ == "MerchantApiKey":
            return "api-merchant-key", str(credential.pk), settings.NOTICE_API_RATE_LIMIT
        return None

    def allow_request(self, request, view):
        scope = self._scope(request)
        if scope is None:
            return True
        name, identity, rate = scope
        self._wait = rate_hit(name, identity, rate_parse(rate))
        return self._wait is None

    def wait(self):
        return self._wait


class WebhookTestRateThrottle(CredentialRateThrottle):
    """On top of the app's API rate: test events it may ask for (WEBHOOK_TEST_RATE_LIMIT), since each
    makes an outbound POST on its behalf."""

    def _scope(self, request) -> tuple[str, str, str | None] | None:
        scope = super()._scope(request)
        if scope is None or scope[0] != "api-app":
            return None
        return "webhook-test", scope[1], settings.WEBHOOK_TEST_RATE_LIMIT

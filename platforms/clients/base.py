"""What every outbound platform client shares: timeouts, bounded retries, typed errors.

Retried here (a few quick attempts): connection errors, timeouts, 429 and 5xx. Anything else 4xx is
the platform saying no and is raised at once. Callers (the processing task) add their own slower
backoff on top for the transient errors, which carry `transient = True`.
Error messages never include credentials; they quote at most a short piece of the platform's reply.

Requests go through violet_refunds.outbound (a store URL is the merchant's to choose): public
addresses only, checked at connect time on every attempt; redirects are not followed (a 3xx is a
rejection) and proxy environment variables are ignored.
"""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal

import requests
from django.conf import settings

from violet_refunds.exceptions import ApplicationError
from violet_refunds.outbound import OutboundAddressRefused, hardened_session

logger = logging.getLogger(__name__)


class PlatformClientError(ApplicationError):
    """A call to a merchant's platform did not give us what we asked for."""

    status_code = 502
    error_code = "platform_error"
    transient = False

    def __init__(self, message: str, *, platform: str = "", http_status: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.platform = platform
        self.http_status = http_status


class PlatformUnavailable(PlatformClientError):
    """Timeout, connection error, 429 or 5xx after our retries: worth trying again later."""

    error_code = "platform_unavailable"
    transient = True


class PlatformRequestRejected(PlatformClientError):
    """A 4xx answer: retrying the same request will not help."""

    error_code = "platform_rejected"


class PlatformAuthenticationFailed(PlatformRequestRejected):
    """401/403: the stored credentials are wrong, revoked, or lack a permission."""

    error_code = "platform_authentication_failed"


class PlatformNotFound(PlatformRequestRejected):
    error_code = "platform_not_found"


class PlatformResponseInvalid(PlatformClientError):
    """A 2xx whose body is not the JSON object we expect."""

    error_code = "platform_response_invalid"


class ConnectionMisconfigured(PlatformClientError):
    """The store connection lacks a credential this client needs."""

    error_code = "connection_misconfigured"


class SettingText:
    """A client attribute read from a setting at every access, on the class or an instance (an API
    version, issue #24), so overriding the setting is all a deployment or a test needs."""

    def __init__(self, setting_name: str):
        self.setting_name = setting_name

    def __get__(self, instance, owner=None) -> str:
        return str(getattr(settings, self.setting_name))


class SettingUrl(SettingText):
    """A client's base URL (or URL pattern) read from a setting at every access, on the class or an
    instance, so staging, a sandbox or a test server needs only a setting (issue #15 item 6). The
    defaults (violet_refunds/settings.py) are the platforms' production hosts. A trailing slash is
    dropped: callers join paths with one."""

    def __get__(self, instance, owner=None) -> str:
        return super().__get__(instance, owner).rstrip("/")


def _reply_excerpt(response: requests.Response, limit: int = 300) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return text[:limit]


class PlatformHttpClient:
    platform = ""
    # (connect, read) seconds: fail fast, the task retries later anyway.
    connect_timeout = 3.05
    read_timeout = 10.0
    max_attempts = 3
    backoff_seconds = 0.5
    max_retry_after_seconds = 10.0
    retry_statuses = frozenset({429, 500, 502, 503, 504})

    def __init__(self, *, session: requests.Session | None = None):
        self.session = session or hardened_session()

    def _sleep_before_retry(self, attempt: int, retry_after: str | None = None) -> None:
        delay = self.backoff_seconds * (2 ** (attempt - 1))
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.max_retry_after_seconds))
        if delay > 0:
            time.sleep(delay)

    def request_json(self, method: str, url: str, *, max_attempts: int | None = None, **kwargs) -> dict:
        """Send the request with retries; return the JSON object (floats parsed as Decimal).
        `max_attempts=1` for a write the platform cannot deduplicate (a refund create): a timeout or
        5xx may mean it was done, so the caller looks it up before sending again."""
        data = self._send(method, url, max_attempts=max_attempts or self.max_attempts, **kwargs)
        if not isinstance(data, dict):
            raise PlatformResponseInvalid(
                f"{self.platform} answered with JSON that is not an object.", platform=self.platform
            )
        return data

    def request_json_list(self, method: str, url: str, **kwargs) -> list:
        """Like request_json, for endpoints that answer a JSON array (WooCommerce lists)."""
        data = self._send(method, url, max_attempts=self.max_attempts, **kwargs)
        if data == {}:
            return []
        if not isinstance(data, list):
            raise PlatformResponseInvalid(
                f"{self.platform} answered with JSON that is not a list.", platform=self.platform
            )
        return data

    def _send(self, method: str, url: str, *, max_attempts: int, **kwargs) -> dict | list:
        last_error: PlatformClientError | None = None
        for attempt in range(1, max_attempts + 1):
            retry_after = None
            try:
                response = self.session.request(
                    method, url, timeout=(self.connect_timeout, self.read_timeout), **kwargs
                )
            except OutboundAddressRefused as exc:
                # Not transient, and never worth a retry: the address is not one we send to.
                raise PlatformRequestRejected(f"{self.platform}: {exc}", platform=self.platform) from None
            except requests.Timeout as exc:
                last_error = PlatformUnavailable(
                    f"{self.platform}: no answer within the timeout ({type(exc).__name__}).",
                    platform=self.platform,
                )
            except requests.ConnectionError as exc:
                last_error = PlatformUnavailable(
                    f"{self.platform}: could not connect ({type(exc).__name__}).", platform=self.platform
                )
            else:
                if response.status_code in self.retry_statuses:
                    retry_after = response.headers.get("Retry-After")
                    last_error = PlatformUnavailable(
                        f"{self.platform} answered {response.status_code}: {_reply_excerpt(response)}",
                        platform=self.platform,
                        http_status=response.status_code,
                    )
                elif response.status_code >= 300:
                    raise self._rejection(response)
                else:
                    return self._decode(response)
            logger.warning("%s %s attempt %s/%s failed: %s", method, url, attempt, max_attempts, last_error)
            if attempt < max_attempts:
                self._sleep_before_retry(attempt, retry_after)
        assert last_error is not None
        raise last_error

    def _rejection(self, response: requests.Response) -> PlatformRequestRejected:
        status = response.status_code
        message = f"{self.platform} answered {status}: {_reply_excerpt(response)}"
        if 300 <= status < 400:
            message = f"{self.platform} answered {status} (a redirect, not followed)."
        cls: type[PlatformRequestRejected]
        if status in (401, 403):
            cls = PlatformAuthenticationFailed
        elif status == 404:
            cls = PlatformNotFound
        else:
            cls = PlatformRequestRejected
        return cls(message, platform=self.platform, http_status=status)

    def _decode(self, response: requests.Response) -> dict | list:
        if not response.content:
            return {}
        try:
            data = json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise PlatformResponseInvalid(
                f"{self.platform} answered {response.status_code} with a body that is not JSON.",
                platform=self.platform,
                http_status=response.status_code,
            ) from exc
        if not isinstance(data, dict | list):
            raise PlatformResponseInvalid(
                f"{self.platform} answered with JSON that is neither an object nor a list.", platform=self.platform
            )
        return data


def required_credentials(connection, platform: str, *names: str) -> dict[str, str]:
    """The named credentials of a store connection, trimmed; ConnectionMisconfigured if any is missing."""
    stored = connection.credentials or {}
    values = {name: str(stored.get(name) or "").strip() for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConnectionMisconfigured(
            f"The {platform} store connection of {connection.merchant} lacks: {', '.join(missing)}.",
            platform=platform,
        )
    return values

"""One HTTP POST of a webhook body. No database here: the caller records what happened.

The POST goes through violet_refunds.outbound: the endpoint's name is resolved at send time, on
every attempt, and anything that is not a public address (unless explicitly allowed by
OUTBOUND_ALLOWED_PRIVATE_NETWORKS) is refused before a socket is opened.

What the channel may see of an attempt (`error`) is the status code or why nothing was answered;
the start of the reply body (`reply_excerpt`) is kept apart, for operators only: a reply may come
from a service the channel could not otherwise read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from violet_refunds.outbound import OutboundAddressRefused, hardened_session

CONNECT_TIMEOUT_SECONDS = 3.05
# What we keep of a failing endpoint's reply, for operators only.
REPLY_EXCERPT_BYTES = 500


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str
    duration_ms: int
    reply_excerpt: str = ""  # operators only: never shown to the channel

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_webhook(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> AttemptResult:
    """POST the exact bytes. 2xx is success; redirects are not followed (the registered URL is the
    one that must answer); a slow, unreachable or refused endpoint is a failed attempt, never an
    exception."""
    started = time.monotonic()
    status_code: int | None = None
    excerpt = ""
    try:
        with (
            hardened_session() as session,
            session.post(
                url,
                data=body,
                headers=headers,
                timeout=(min(CONNECT_TIMEOUT_SECONDS, timeout), timeout),
                stream=True,  # read only the start of the reply: a channel's error page can be huge
            ) as response,
        ):
            status_code = response.status_code
            error = ""
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
                excerpt = _reply_excerpt(response)
    except OutboundAddressRefused as exc:
        error = str(exc)
    except requests.Timeout:
        error = f"No answer within {timeout:g} s."
    except requests.ConnectionError as exc:
        error = f"Connection failed: {_short(exc)}"
    except requests.RequestException as exc:
        error = f"Request failed: {_short(exc)}"
    duration_ms = int((time.monotonic() - started) * 1000)
    return AttemptResult(status_code=status_code, error=error, duration_ms=duration_ms, reply_excerpt=excerpt)


def _reply_excerpt(response: requests.Response) -> str:
    try:
        excerpt = response.raw.read(REPLY_EXCERPT_BYTES, decode_content=True) or b""
    except Exception:  # a reply that stalls or breaks mid-body: the status code says enough
        return ""
    return excerpt.decode("utf-8", errors="replace").strip().replace("\n", " ")


def _short(exc: Exception, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]

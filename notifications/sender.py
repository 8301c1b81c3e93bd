"""One HTTP POST of a webhook body. No database here: the caller records what happened."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

CONNECT_TIMEOUT_SECONDS = 3.05
# What we keep of a failing endpoint's reply, for the operator and the channel.
REPLY_EXCERPT_BYTES = 500


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_webhook(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> AttemptResult:
    """POST the exact bytes. 2xx is success; redirects are not followed (the registered URL is the
    one that must answer); a slow or unreachable endpoint is a failed attempt, never an exception."""
    started = time.monotonic()
    status_code: int | None = None
    try:
        with requests.post(
            url,
            data=body,
            headers=headers,
            timeout=(min(CONNECT_TIMEOUT_SECONDS, timeout), timeout),
            allow_redirects=False,
            stream=True,  # read only the start of the reply: a channel's error page can be huge
        ) as response:
            status_code = response.status_code
            error = ""
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}" + _reply_excerpt(response)
    except requests.Timeout:
        error = f"No answer within {timeout:g} s."
    except requests.ConnectionError as exc:
        error = f"Connection failed: {_short(exc)}"
    except requests.RequestException as exc:
        error = f"Request failed: {_short(exc)}"
    duration_ms = int((time.monotonic() - started) * 1000)
    return AttemptResult(status_code=status_code, error=error, duration_ms=duration_ms)


def _reply_excerpt(response: requests.Response) -> str:
    try:
        excerpt = response.raw.read(REPLY_EXCERPT_BYTES, decode_content=True) or b""
    except Exception:  # a reply that stalls or breaks mid-body: the status code says enough
        return ""
    text = excerpt.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return f": {text}" if text else ""


def _short(exc: Exception, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]

"""Where "Connect your store" sends the merchant afterwards (seed 003: "Upon success you will be
redirected back to the channel who first sent you to Violet").

The channel links to the connect page with `app_id` and `redirect_uri`. The redirect is followed only
when the URI is absolute, https (http too while DEBUG), carries no user-info, and its host (and port,
if any) is one the channel registered in App.allowed_redirect_hosts. Anything else (another host,
`//evil.example`, `javascript:`, `https://allowed@evil`, backslashes, control characters) falls back
to the portal home: the connect page is never an open redirect.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.utils.http import url_has_allowed_host_and_scheme

from portal.selectors import app_get_for_redirect
from refunds.models import App

REDIRECT_URI_MAX_LENGTH = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _registered_hosts(app: App) -> set[str]:
    hosts = app.allowed_redirect_hosts if isinstance(app.allowed_redirect_hosts, list) else []
    return {host.strip().lower() for host in hosts if isinstance(host, str) and host.strip()}


def channel_redirect_app(app_id, redirect_uri: str, *, allow_http: bool) -> App | None:
    """The channel whose registered hosts allow `redirect_uri`, or None when it must not be followed."""
    uri = redirect_uri or ""
    if not uri or not app_id or len(uri) > REDIRECT_URI_MAX_LENGTH:
        return None
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in uri):
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes or not parts.hostname:
        return None
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return None
    app = app_get_for_redirect(app_id)
    if app is None:
        return None
    host = parts.hostname.lower()
    allowed = _registered_hosts(app)
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        host_allowed = host in allowed or f"{host}:{_DEFAULT_PORTS[parts.scheme]}" in allowed
    else:
        host_allowed = f"{host}:{port}" in allowed
    if not host_allowed:
        return None
    # Django's own check as a second opinion (it rejects what browsers would read differently).
    if not url_has_allowed_host_and_scheme(uri, allowed_hosts={parts.netloc}, require_https=not allow_http):
        return None
    return app


def channel_redirect_url(app_id, redirect_uri: str, *, merchant_id: int, allow_http: bool) -> str | None:
    """The URL to send the merchant back to, with `merchant_id` added so the channel knows which store
    connected; None when the URI is not allowed."""
    if channel_redirect_app(app_id, redirect_uri, allow_http=allow_http) is None:
        return None
    parts = urlsplit(redirect_uri)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "merchant_id"]
    query.append(("merchant_id", str(merchant_id)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))

"""Content-Security-Policy for every page (the admin, the portal, the API docs), on under DEBUG=false.

Scripts and <style> blocks run only from our own origin or with this response's nonce
(`{{ request.csp_nonce }}` on the few inline blocks our templates and the Swagger UI page have);
no 'unsafe-inline' and no 'unsafe-eval' for scripts. Inline `style="..."` attributes (which cannot
run code) stay allowed through `style-src-attr`. Images may be data: URIs (the Swagger UI's icons).
Nothing loads from another origin: the Swagger UI is served by drf-spectacular-sidecar.

Settings: CSP_ENABLED (default: not DEBUG), CSP_REPORT_ONLY (send Content-Security-Policy-Report-Only
instead, to try a change), CSP_REPORT_URI (optional, where browsers report violations).
"""

from __future__ import annotations

import secrets

from django.conf import settings

HEADER = "Content-Security-Policy"
REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"


def policy(nonce: str) -> str:
    directives = [
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    ]
    report_uri = getattr(settings, "CSP_REPORT_URI", "")
    if report_uri:
        directives.append(f"report-uri {report_uri}")
    return "; ".join(directives)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(18)
        response = self.get_response(request)
        if getattr(settings, "CSP_ENABLED", False):
            header = REPORT_ONLY_HEADER if getattr(settings, "CSP_REPORT_ONLY", False) else HEADER
            if header not in response:
                response[header] = policy(request.csp_nonce)
        return response

"""The operator's own time zone on admin pages.

A small script on every admin page (templates/admin/base_site.html) stores the browser's IANA zone
(`Intl.DateTimeFormat().resolvedOptions().timeZone`) in the `tz` cookie; this middleware activates
that zone for admin requests, so every date the admin renders is in the operator's zone, with its
abbreviation (violet_refunds/formats: "2026-12-02 11:27 CET"). A missing, unknown or malformed
cookie leaves settings.TIME_ZONE. Nothing else follows the cookie: the channel API, webhooks and
CSV exports write UTC ISO 8601 explicitly, and the merchant portal keeps settings.TIME_ZONE.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

TIME_ZONE_COOKIE = "tz"
# IANA names are short ASCII paths ("America/Argentina/Buenos_Aires", "Etc/GMT+5"); anything else is
# refused before zoneinfo looks for a file of that name.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
_ZONE_NAME_MAX = 64


def zone_from_cookie(value: str | None) -> zoneinfo.ZoneInfo | None:
    """The zone the cookie names, or None when it names no zone this machine knows."""
    if not value or len(value) > _ZONE_NAME_MAX or not _ZONE_NAME.fullmatch(value):
        return None
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


class OperatorTimeZoneMiddleware:
    """Admin requests render in the zone of the operator's browser (the `tz` cookie), when valid."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self._admin_prefix: str | None = None

    def _is_admin(self, request: HttpRequest) -> bool:
        if self._admin_prefix is None:
            try:
                self._admin_prefix = reverse("admin:index")
            except NoReverseMatch:
                # A URL conf without the admin (a test's, a bench's): no request is an admin one.
                return False
        return request.path.startswith(self._admin_prefix)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = zone_from_cookie(request.COOKIES.get(TIME_ZONE_COOKIE)) if self._is_admin(request) else None
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            # The thread serves other requests next: they start from settings.TIME_ZONE again.
            timezone.deactivate()

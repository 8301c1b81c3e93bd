"""Deny by default (issue 19, item 7): every URL the project serves either refuses an anonymous
request (401/403, or a redirect to a login page) or is on the explicit public list below, with the
reason it is public. A new view is closed until it opts in: DRF's defaults authenticate nobody and
permit nobody (violet_refunds.permissions.IsAuthenticatedRequest)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, converters, get_resolver
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

pytestmark = pytest.mark.django_db

# name -> why anyone may call it.
PUBLIC = {
    "healthz": "load balancer health check, says only ok",
    "readyz": "readiness probe: each check's name and result, no data and no exception messages",
    "api:login": "POST /v1/login: the app id and secret authenticate it; rate limited",
    "api:schema": "the OpenAPI document of the channel API",
    "api:docs": "Swagger UI of that document",
    "api:unknown": "the API's JSON 404 for any other path under /v1/",
    "portal:login": "the portal's login page",
    "portal:logout": "logging out needs no login",
    "portal:password_reset": "password reset: the emailed token authenticates",
    "portal:password_reset_done": "password reset",
    "portal:password_reset_confirm": "password reset",
    "portal:password_reset_complete": "password reset",
    "admin:login": "the admin's login page",
    "admin:logout": "logging out needs no login",
}
# Platform webhook receivers: authenticated by each platform's signature on the raw body, not by a
# login (a request without a valid signature is refused; tests/platforms prove it per platform).
PUBLIC_PREFIXES = {
    "platforms:": "platform webhook receivers, verified by signature",
    # tests/stripe_events prove a bad signature is a 400 that stores nothing.
    "stripe_events:": "Stripe's webhook receiver, verified with the endpoint's signing secrets",
}

LOGIN_PAGES = (settings.LOGIN_URL, "/admin/login/")


def _walk(patterns, prefix="", namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = namespace
            if pattern.namespace:
                ns = f"{namespace}{pattern.namespace}:"
            yield from _walk(pattern.url_patterns, prefix + _concrete(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}{pattern.name}" if pattern.name else f"{namespace}<unnamed {pattern.pattern}>"
            yield name, "/" + prefix + _concrete(pattern.pattern), pattern.callback


def _sample(converter) -> str:
    if isinstance(converter, converters.IntConverter):
        return "1"
    if isinstance(converter, converters.UUIDConverter):
        return str(uuid.uuid4())
    return "x"


def _concrete(pattern) -> str:
    """A path matching the pattern: converters and the few regexes the project uses get samples."""
    text = str(pattern)
    if hasattr(pattern, "_route"):  # path()
        found = pattern.converters
        return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: _sample(found[m.group(1)]), text)
    # re_path(): the admin's and the API's catch-alls, the admin's app lists, the webhook receivers
    regex = text.lstrip("^").rstrip("$")
    if regex in (".*", "(?P<url>.*)"):
        return "no-such-page/"
    if regex.startswith("(?P<app_label>"):
        return "refunds/"
    regex = re.sub(r"\(\?P<\w+>[^)]*\)", "x", regex)
    return regex.replace("/?", "/")


def _is_public(name: str) -> bool:
    return name in PUBLIC or any(name.startswith(prefix) for prefix in PUBLIC_PREFIXES)


def _refused(response) -> bool:
    if response.status_code in (401, 403):
        return True
    if response.status_code == 302:
        return response["Location"].startswith(LOGIN_PAGES)
    return False


def routes():
    return list(_walk(get_resolver().url_patterns))


def test_every_url_refuses_anonymous_requests_unless_listed_public():
    client = Client()
    open_doors = []
    for name, path, _callback in routes():
        if _is_public(name):
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(
                path, data={} if method == "get" else "{}", content_type="application/json"
            )
            if not _refused(response):
                open_doors.append(f"{method.upper()} {path} ({name}): {response.status_code}")
    assert open_doors == []


def test_the_walk_covers_every_face():
    paths = [path for _name, path, _cb in routes()]
    for prefix in ("/admin/", "/v1/", "/portal/", "/webhooks/"):
        assert any(p.startswith(prefix) for p in paths), prefix
    assert len(paths) > 50
    assert not [p for p in paths if "<" in p or "(?P" in p], "every pattern becomes a concrete path"


def test_the_public_list_names_only_routes_that_exist():
    names = {name for name, _path, _cb in routes()}
    assert set(PUBLIC) <= names


def test_api_views_deny_by_default_and_only_public_ones_allow_any():
    assert settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] == []
    assert settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] == [
        "violet_refunds.permissions.IsAuthenticatedRequest"
    ]
    for name, path, callback in routes():
        view_class = getattr(callback, "cls", None)
        if view_class is None or not issubclass(view_class, APIView):
            continue
        allows_any = any(issubclass(p, AllowAny) for p in view_class.permission_classes)
        if allows_any:
            assert _is_public(name), f"{path} ({name}) allows anyone but is not on the public list"


def test_a_new_api_view_is_closed_until_it_opts_in():
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory

    class Forgotten(APIView):
        def get(self, request):
            return Response({"secret": "data"})

    response = Forgotten.as_view()(APIRequestFactory().get("/v1/forgotten"))
    assert response.status_code in (401, 403)

"""Content-Security-Policy (issue 19, item 6) on each face under DEBUG=false: the admin, the portal
and the API docs; inline blocks carry the response's nonce; the Swagger UI still renders in a real
browser with the policy on (no violation reported)."""

import re

import pytest
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    settings.CSP_ENABLED = True
    settings.DEBUG = False


def _policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in header.split("; ")}


def _nonce(response) -> str:
    return re.search(r"'nonce-([^']+)'", _policy(response)["script-src"]).group(1)


@pytest.mark.parametrize("path", ["/admin/login/", "/portal/login/", "/v1/docs/", "/v1/schema/"])
def test_every_face_sends_the_policy(production, path):
    response = Client().get(path)

    assert response.status_code == 200
    policy = _policy(response)
    assert policy["default-src"] == "'self'"
    assert "unsafe-inline" not in policy["script-src"] and "unsafe-eval" not in policy["script-src"]
    assert "unsafe-inline" not in policy["style-src"]
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"


def test_the_admin_index_and_portal_pages_nonce_their_inline_blocks(production):
    admin = UserFactory(username="csp-admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    response = client.get("/admin/")
    assert response.status_code == 200, response.get("Location")
    page = response.content.decode()
    nonce = _nonce(response)
    assert f'<style nonce="{nonce}">' in page
    assert "<style>" not in page and "<script>" not in page


def test_the_docs_page_nonces_the_swagger_ui_init(production):
    response = Client().get("/v1/docs/")
    page = response.content.decode()
    nonce = _nonce(response)
    assert f'<script nonce="{nonce}">' in page
    assert f'<style nonce="{nonce}">' in page
    assert "<script>" not in page and "<style>" not in page
    assert "cdn" not in page.lower()  # everything from our origin (drf-spectacular-sidecar)


def test_each_response_has_its_own_nonce(production):
    client = Client()
    assert _nonce(client.get("/v1/docs/")) != _nonce(client.get("/v1/docs/"))


def test_off_in_debug_unless_asked(settings):
    settings.CSP_ENABLED = False
    assert "Content-Security-Policy" not in Client().get("/portal/login/")


def test_report_only_mode(settings):
    settings.CSP_ENABLED = True
    settings.CSP_REPORT_ONLY = True
    settings.CSP_REPORT_URI = "/csp-report"
    response = Client().get("/portal/login/")
    assert "Content-Security-Policy" not in response
    assert "report-uri /csp-report" in response["Content-Security-Policy-Report-Only"]

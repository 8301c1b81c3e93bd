"""The admin shows which money it moves (issue #16, item 1): a SANDBOX / TEST / LIVE badge in every
page's header from the Stripe key's prefix, and the sandbox's pages only while the sandbox is in use."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib import admin

from stripe_sandbox.models import SandboxRefund, SandboxRequest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("api_key", "badge"),
    [
        ("", "SANDBOX"),
        ("sk_test_51Abc", "TEST"),
        ("rk_test_51Abc", "TEST"),
        ("sk_live_51Abc", "LIVE"),
        ("rk_live_51Abc", "LIVE"),
        ("pk_live_51Abc", "UNKNOWN"),  # a publishable key is no secret key: said so, never taken for TEST
    ],
)
def test_the_admin_index_shows_which_money_it_moves(admin_client, settings, api_key, badge):
    settings.STRIPE_API_KEY = api_key

    html = admin_client.get("/admin/").content.decode()

    assert f'data-stripe-mode="{badge}"' in html
    assert f">{badge}</span>" in html
    others = {"SANDBOX", "TEST", "LIVE", "UNKNOWN"} - {badge}
    assert not any(f'data-stripe-mode="{other}"' in html for other in others)


def test_the_badge_is_on_every_admin_page_and_the_login(client, admin_client, settings):
    settings.STRIPE_API_KEY = "sk_live_51Abc"

    assert 'data-stripe-mode="LIVE"' in admin_client.get("/admin/refunds/refund/").content.decode()
    assert 'data-stripe-mode="LIVE"' in client.get("/admin/login/").content.decode()


def test_the_sandbox_pages_are_there_while_the_sandbox_is_in_use(admin_client):
    assert admin.site.is_registered(SandboxRefund) and admin.site.is_registered(SandboxRequest)
    assert admin_client.get("/admin/stripe_sandbox/sandboxrefund/").status_code == 200


REGISTERED = """
import json, django
django.setup()
from django.contrib import admin
from django.apps import apps
print(json.dumps({
    "installed": apps.is_installed("stripe_sandbox"),
    "registered": sorted(m._meta.model_name for m in admin.site._registry if m._meta.app_label == "stripe_sandbox"),
}))
"""


@pytest.mark.parametrize(("api_key", "registered"), [("", True), ("sk_test_51Abc", False), ("sk_live_51Abc", False)])
def test_on_real_stripe_the_sandbox_pages_are_not_registered(api_key, registered):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "violet_refunds.settings"}
    if api_key:
        env["STRIPE_API_KEY"] = api_key
    result = subprocess.run(
        [sys.executable, "-c", REGISTERED], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["installed"] is True  # the app (its migrations, its tables) stays installed
    assert bool(report["registered"]) is registered
    if registered:
        assert "sandboxrefund" in report["registered"] and "sandboxrequest" in report["registered"]

"""Shared by the admin tests and the operator browser tests: refunds made by the real engine, and
operator accounts in the groups the data migration defines."""

import importlib

from django.apps import apps
from django.contrib.auth.models import Group

from refunds.models import RefundSource
from refunds.services import refund_process, refund_record
from stripe_sandbox import ledger
from tests.factories import DEFAULT_PASSWORD, UserFactory

OPERATORS, VIEWERS = "Refund operators", "Refund viewers"

_groups_migration = importlib.import_module("refunds.migrations.0003_refund_operator_groups")
_raw_payload_migration = importlib.import_module("platforms.migrations.0009_privacy_permissions_and_shopify_routing")
_findings_permissions = importlib.import_module("refunds.migrations.0009_findings_and_stripe_events_permissions")


def ensure_refund_groups() -> dict[str, Group]:
    """The groups exactly as the migration creates them. Transactional tests flush every table,
    groups included, so tests recreate them the same (idempotent) way."""
    _groups_migration.ensure_groups(apps)
    _raw_payload_migration.ensure_raw_payload_permission(apps)
    _findings_permissions.ensure_permissions(apps)
    return {name: Group.objects.get(name=name) for name in (OPERATORS, VIEWERS)}


def staff_in(group_name: str, username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(ensure_refund_groups()[group_name])
    return user


def record(bag, **kwargs):
    kwargs.setdefault("source", RefundSource.PLATFORM_WEBHOOK)
    kwargs.setdefault("actor", "platform:test")
    return refund_record(bag=bag, enqueue=False, **kwargs).refund


def processed(refund, fault: str | None = None, path: str | None = None):
    """Run the engine once on `refund`, with one sandbox fault injected first if given."""
    if fault:
        ledger.inject_fault(fault, times=1, path=path)
    refund_process(refund_id=refund.pk)
    refund.refresh_from_db()
    return refund


def log_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def confirm_operation(page, refund, button, operation: str, note: str) -> None:
    """Click a repair on the refund page, confirm it with a note, and land back on the refund page with
    an outcome message naming the refund. A repair that may move money states its consequence per
    party on the confirmation page first (resolving errors moves nothing)."""
    import re

    from playwright.sync_api import expect

    button.click()
    if operation != "resolve-errors":
        expect(page.locator(".refund-consequences li[data-party=network]")).to_be_visible()
    page.fill("textarea[name=note]", note)
    page.click("#confirm-operation")
    page.wait_for_url(re.compile(rf"/admin/refunds/refund/{refund.pk}/change/$"))
    expect(page.locator(".messagelist")).to_contain_text(f"Refund {refund.pk}")

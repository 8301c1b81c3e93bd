"""An operator's day in a real browser: log in, open the failed refunds, retry one, watch it complete."""

import re

import pytest
from playwright.sync_api import expect

from refunds.models import RefundEvent, RefundStatus
from tests.refunds.admin.helpers import OPERATORS, log_in, processed, record, staff_in
from tests.world import funded_bag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_retries_a_failed_refund_until_it_completes(live_server, page, screenshot):
    operator = staff_in(OPERATORS, "olivia")
    # Both transfers reversed, then the shopper's refund refused once by Stripe (charge disputed).
    failed = processed(record(funded_bag()), fault="charge_disputed", path="/v1/refunds")
    partial = processed(record(funded_bag()), fault="balance_insufficient", path="/v1/transfers/*/reversals")
    assert (failed.status, partial.status) == (RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED)

    log_in(page, live_server, operator)
    expect(page.locator("#refund-triage")).to_contain_text("Failed refunds (2)")
    expect(page.locator("a[data-triage=failed] .triage-count")).to_have_text("1")
    screenshot("operator-admin-index")

    page.click("#failed-refunds-link")
    page.wait_for_url(re.compile(r"/admin/refunds/refund/\?triage=failed$"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Failed")  # oldest first
    expect(rows.first.locator(".refund-step--failed")).to_have_text("Shopper ✗")
    screenshot("operator-failed-refunds")

    rows.first.locator(f"th.field-id a[href*='/refunds/refund/{failed.pk}/change/']").click()
    expect(page.locator("#refund-triage-panel")).to_contain_text("failed, no money moved")
    page.click("text=Retry processing…")
    expect(page.locator("#content-main")).to_contain_text("What will happen")
    page.fill("textarea[name=note]", "Dispute closed, retrying")
    page.click("#confirm-operation")

    page.wait_for_url(re.compile(rf"/admin/refunds/refund/{failed.pk}/change/$"))
    expect(page.locator(".messagelist")).to_contain_text(f"Refund {failed.pk} retried, now Processing.")
    expect(page.locator("#refund-triage-panel .refund-status")).to_have_text("Completed")
    expect(page.locator("#refund-triage-panel tr[data-step=SHOPPER_REFUND]")).to_contain_text("money moved")

    failed.refresh_from_db()
    assert failed.status == RefundStatus.COMPLETED
    retry = failed.events.get(kind=RefundEvent.Kind.RETRY_REQUESTED)
    assert (retry.actor, retry.message) == (f"operator:{operator.username}", "Dispute closed, retrying")

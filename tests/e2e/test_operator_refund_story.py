"""The refund page as an operator reads it in a real browser: the story at the top (parties, steps
with amounts, the error beside its recommended step, one timeline), the recommended repair leading
and working, and a repair the state forbids shown disabled with its reason."""

import re

import pytest
from playwright.sync_api import expect

from refunds.models import RefundError, RefundEvent, RefundStatus
from tests.refunds.admin.helpers import OPERATORS, confirm_operation, log_in, processed, record, staff_in
from tests.world import funded_bag
from violet_refunds.money import format_amount

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_refund(page, live_server, refund):
    page.goto(f"{live_server.url}/admin/refunds/refund/{refund.pk}/change/")
    expect(page.locator("#refund-triage-panel")).to_be_visible()


def test_refund_story_page_reads_top_to_bottom(live_server, page, screenshot):
    operator = staff_in(OPERATORS, "olivia")
    refund = processed(record(funded_bag()), fault="charge_disputed", path="/v1/refunds")
    assert refund.status == RefundStatus.FAILED
    log_in(page, live_server, operator)
    open_refund(page, live_server, refund)

    amount = format_amount(refund.amount, refund.refund_currency)
    expect(page.locator("#refund-parties tr[data-party=shopper]")).to_contain_text(amount)
    expect(page.locator("#refund-parties tr[data-party=shopper]")).to_contain_text("not refunded")
    expect(page.locator("#refund-parties tr[data-party=merchant]")).to_contain_text("gave back")
    merchant = refund.transfer_reversals.get(transfer__recipient="MERCHANT")
    expect(page.locator("#refund-steps tr[data-step=MERCHANT_REVERSAL]")).to_contain_text(
        format_amount(merchant.amount, merchant.currency)
    )
    expect(page.locator("#refund-steps tr[data-step=MERCHANT_REVERSAL]")).to_contain_text(merchant.gateway_reversal_id)
    expect(page.locator("#refund-open-errors .refund-recommendation")).to_contain_text("dispute note")
    rows = page.locator("#refund-timeline tbody tr")
    expect(rows.first).to_contain_text("UTC")
    expect(page.locator("#refund-timeline")).to_contain_text(f"reversed {format_amount(merchant.amount, 'USD')}")
    # No Save on a money record.
    expect(page.locator("input[name=_save]")).to_have_count(0)
    screenshot("operator-refund-story")

    page.goto(f"{live_server.url}/admin/refunds/refund/{refund.pk}/history/")
    expect(page.locator("#refund-timeline")).to_contain_text("Step failed")
    screenshot("operator-refund-history")


@pytest.mark.parametrize(
    ("fault", "path", "recommended", "note", "expected_status"),
    [
        ("charge_disputed", "/v1/refunds", "resolve-errors", "Dispute opened 2 Dec, ticket 88", RefundStatus.FAILED),
        (
            "charge_already_refunded",
            "/v1/refunds",
            "mark-external",
            "Refunded in the Stripe Dashboard",
            RefundStatus.EXTERNAL,
        ),
        ("balance_insufficient", "/v1/transfers/*/reversals", "retry", "Connected account topped up", None),
    ],
    ids=["charged-back", "already-refunded", "insufficient-balance"],
)
def test_recommended_action_leads_and_works(
    live_server, page, screenshot, fault, path, recommended, note, expected_status
):
    operator = staff_in(OPERATORS, "olivia")
    refund = processed(record(funded_bag()), fault=fault, path=path)
    log_in(page, live_server, operator)
    open_refund(page, live_server, refund)

    first = page.locator("#refund-operations .button").first
    expect(first).to_have_attribute("data-operation", recommended)
    expect(first).to_contain_text("Recommended:")
    screenshot(f"operator-recommended-{recommended}")
    confirm_operation(page, refund, first, recommended, note)
    refund.refresh_from_db()
    if expected_status is not None:
        assert refund.status == expected_status
    if recommended == "resolve-errors":
        assert not RefundError.objects.filter(refund=refund, resolved=False).exists()
        assert refund.events.filter(kind=RefundEvent.Kind.ERROR_RESOLVED, message=note).exists()
    elif recommended == "retry":
        assert refund.events.filter(kind=RefundEvent.Kind.RETRY_REQUESTED, message=note).exists()


def test_a_repair_the_state_forbids_is_disabled_with_the_reason(live_server, page, screenshot):
    operator = staff_in(OPERATORS, "olivia")
    refund = processed(record(funded_bag()), fault="charge_disputed", path="/v1/refunds")
    log_in(page, live_server, operator)
    open_refund(page, live_server, refund)

    cancel = page.locator("#refund-operations [data-operation=cancel]")
    expect(cancel).to_have_attribute("aria-disabled", "true")
    expect(cancel).not_to_have_attribute("href", re.compile(".*"))
    expect(page.locator("#refused-cancel")).to_contain_text("Money already moved")
    screenshot("operator-refused-cancel")

    # Even reached directly, the confirmation page offers nothing to confirm.
    page.goto(f"{live_server.url}/admin/refunds/refund/{refund.pk}/cancel/")
    expect(page.locator("#operation-refused")).to_be_visible()
    expect(page.locator("#confirm-operation")).to_have_count(0)
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED

"""One recommended action per row of RECOMMENDED_ACTIONS, through the real admin page in a real browser.

The three rows the sandbox produces directly (charged back, already refunded, insufficient balance)
are covered in test_operator_refund_story.py. Here, every other row: a refund failed by the real
engine (the shopper step refused after the merchant's and channel's reversals went through), whose
open error is then given the row's code (the sandbox cannot produce every Stripe or data failure; the
page decides from the code alone, so the row is what is exercised). On the refund's page the row's
words stand beside the error, its action leads and is marked recommended, every repair the state
forbids is disabled with its reason (Cancel: money already moved), and the action, confirmed with a
note, does what it says. One browser session and one set-up for the whole module (one refund per row),
so the eleven rows cost one login.
"""

import re

import pytest
from playwright.sync_api import expect

from refunds.admin.position import RECOMMENDED_ACTIONS
from refunds.errors import RefundErrorCode
from refunds.models import RefundError, RefundEvent, RefundStatus, RefundStep
from tests.refunds.admin.helpers import OPERATORS, confirm_operation, log_in, processed, record, staff_in
from tests.world import funded_bag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Covered by test_operator_refund_story.test_recommended_action_leads_and_works.
COVERED_ELSEWHERE = {
    RefundErrorCode.CHARGE_DISPUTED,
    RefundErrorCode.CHARGE_ALREADY_REFUNDED,
    RefundErrorCode.BALANCE_INSUFFICIENT,
}
ROWS = [code for code in RECOMMENDED_ACTIONS if code not in COVERED_ELSEWHERE]


def failed_refund_with_error(code: RefundErrorCode):
    """A refund the engine failed at the shopper step (both reversals done), its open error `code`."""
    refund = processed(record(funded_bag()), fault="charge_disputed", path="/v1/refunds")
    assert refund.status == RefundStatus.FAILED
    errors = RefundError.objects.filter(refund=refund, resolved=False)
    assert errors.filter(step=RefundStep.SHOPPER_REFUND).exists()
    errors.update(
        error_code=int(code), error_message=f"{code.name.replace('_', ' ').capitalize()} (as Stripe said it)."
    )
    return refund


def test_every_other_row_leads_with_its_action_and_the_action_works(live_server, browser, screenshot_of):
    assert len(ROWS) == len(RefundErrorCode) - len(COVERED_ELSEWHERE)
    operator = staff_in(OPERATORS, "olivia")
    refunds = {code: failed_refund_with_error(code) for code in ROWS}
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, live_server, operator)
        for code, refund in refunds.items():
            row = RECOMMENDED_ACTIONS[code]
            action = row.operation
            note = f"{code.name}: settled per the recommendation"
            page.goto(f"{live_server.url}/admin/refunds/refund/{refund.pk}/change/")

            # The row's words beside the error (its first sentence), and its action first.
            first_sentence = row.text.split(". ")[0].split("{reason}")[0]
            expect(page.locator("#refund-open-errors .refund-recommendation").first).to_contain_text(first_sentence)
            first = page.locator("#refund-operations .button").first
            expect(first, code.name).to_have_attribute("data-operation", action)
            expect(first, code.name).to_contain_text("Recommended:")
            # Every repair the state forbids is disabled, with its reason named beside it.
            disabled = page.locator("#refund-operations [aria-disabled=true]")
            names = [disabled.nth(i).get_attribute("data-operation") for i in range(disabled.count())]
            assert "cancel" in names, code.name  # money already moved: a cancel cannot undo it
            for name in names:
                button = page.locator(f"#refund-operations [aria-disabled=true][data-operation='{name}']")
                expect(button).to_have_count(1)
                expect(button).not_to_have_attribute("href", re.compile(".*"))
                expect(page.locator(f"#refused-{name}")).to_contain_text("unavailable: ")
            expect(page.locator("#refused-cancel")).to_contain_text("Money already moved")
            screenshot_of(page, f"operator-recommended-row-{code.name.lower()}")

            confirm_operation(page, refund, first, action, note)

            refund.refresh_from_db()
            if action == "mark-external":
                assert refund.status == RefundStatus.EXTERNAL, code.name
                assert refund.events.filter(kind=RefundEvent.Kind.MARKED_EXTERNAL, message__contains=note).exists()
            elif action == "resolve-errors":
                assert refund.status == RefundStatus.FAILED, code.name  # no money moves
                assert not RefundError.objects.filter(refund=refund, resolved=False).exists(), code.name
                assert refund.events.filter(kind=RefundEvent.Kind.ERROR_RESOLVED, message=note).exists()
            else:
                assert action == "retry", code.name
                assert refund.events.filter(kind=RefundEvent.Kind.RETRY_REQUESTED, message=note).exists(), code.name
    finally:
        context.close()

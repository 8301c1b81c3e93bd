"""The failed-refunds list on a phone (390 px): every refund readable without sideways scrolling,
with what an operator needs first (status, amount, which money moved, the last error, merchant)."""

import pytest
from playwright.sync_api import expect

from refunds.models import RefundStatus
from tests.e2e.conftest import ARTIFACTS
from tests.refunds.admin.helpers import OPERATORS, log_in, processed, record, staff_in
from tests.world import funded_bag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_failed_list_at_390_px_shows_the_columns_operators_need(live_server, browser):
    operator = staff_in(OPERATORS, "olivia")
    failed = processed(record(funded_bag()), fault="charge_disputed", path="/v1/refunds")
    assert failed.status == RefundStatus.FAILED
    context = browser.new_context(viewport={"width": 390, "height": 844}, timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        log_in(page, live_server, operator)
        page.goto(f"{live_server.url}/admin/refunds/refund/failed/")
        row = page.locator("#result_list tbody tr").first
        for cell in (".field-status_column", ".field-amount_column", ".field-money_moves", ".field-merchant"):
            locator = row.locator(cell)
            expect(locator).to_be_visible()
            box = locator.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, cell
        expect(row.locator(".refund-last-error")).to_contain_text("3007")
        expect(row.locator(".refund-step--failed")).to_have_text("Shopper ✗")
        table_width = page.evaluate("document.querySelector('#result_list').scrollWidth")
        assert table_width <= 390
        ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the `screenshot` fixture's folder, at phone width
        page.screenshot(path=str(ARTIFACTS / "operator-failed-list-390px.png"), full_page=True)
    finally:
        context.close()

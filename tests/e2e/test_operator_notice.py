"""An operator records a refund an SFCC merchant reported (Option 2), in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from platforms.models import Platform, SfccRefundMode
from refunds.models import Refund, RefundSource, RefundStatus
from tests.factories import MerchantFactory
from tests.refunds.admin.helpers import OPERATORS, log_in, staff_in
from tests.world import funded_bag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_records_an_sfcc_refund_notice(live_server, page, screenshot):
    operator = staff_in(OPERATORS, "olivia")
    merchant = MerchantFactory(
        name="Summit Gear", platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE
    )
    bag = funded_bag(merchant=merchant, skus=((5000, 2),), shipping=500, tax=800, commission_rate="10.00")

    log_in(page, live_server, operator)
    page.click("#record-notice-link")
    page.select_option("#id_merchant", label=str(merchant))
    page.fill("#id_order", bag.external_id)
    page.click("#notice-find-order")

    expect(page.locator("#notice-bag")).to_contain_text("113.00 USD")
    page.locator("#notice-skus input").first.fill("1")
    page.fill("#id_shipping", "5.00")
    page.fill("#id_tax", "4.00")
    page.select_option("#id_reason_code", "CUSTOMER")
    page.fill("#id_external_id", "SFCC-RMA-7")
    page.click("#notice-preview")

    expect(page.locator("#notice-amount")).to_have_text("59.00 USD")
    expect(page.locator("#notice-merchant-reversal")).to_have_text("54.00 USD")
    expect(page.locator("#notice-channel-reversal")).to_have_text("5.00 USD")
    assert Refund.objects.count() == 0  # the preview records nothing
    screenshot("operator-notice-preview")

    page.click("#notice-confirm")
    page.wait_for_url(re.compile(r"/admin/refunds/refund/\d+/change/$"))
    expect(page.locator(".messagelist")).to_contain_text("Recorded refund")

    refund = Refund.objects.get()
    assert page.url.endswith(f"/admin/refunds/refund/{refund.pk}/change/")
    assert (refund.source, refund.external_id, refund.amount) == (RefundSource.OPERATOR, "SFCC-RMA-7", 5900)
    assert refund.events.get(kind="RECORDED").actor == f"operator:{operator.username}"
    # Tasks run in-process after commit: the money already moved.
    assert refund.status == RefundStatus.COMPLETED
    expect(page.locator("#refund-triage-panel .refund-status")).to_have_text("Completed")

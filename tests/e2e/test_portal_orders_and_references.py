"""Real browser, merchant side: finding an order by its number, and a reference reused for a different
refund refused with both refunds side by side (the second is never swapped for the first)."""

import re

import pytest
from playwright.sync_api import expect

from refunds.models import Refund
from tests.factories import DEFAULT_PASSWORD, BagFactory
from tests.portal.conftest import notice_bag, portal_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/portal/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/portal/")


def test_merchant_finds_an_order_by_its_number(live_server, page, screenshot):
    bag = notice_bag(external_id="00012345")
    for number in ("00077777", "00088888"):
        BagFactory(merchant=bag.merchant, external_id=number)
    portal_user(bag.merchant, username="finder")
    log_in(page, live_server, "finder")
    page.goto(f"{live_server.url}/portal/orders/")
    page.get_by_label("Find an order").fill("0001234")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*/portal/orders/\?q=0001234$"))
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("00012345")
    screenshot("portal-order-search")
    rows.first.get_by_role("link", name="00012345").click()
    expect(page.locator("#report-refund-top")).to_contain_text("Report a refund (up to 128.00 USD)")


def report(page, live_server, bag, *, tax: str, reference: str):
    page.goto(f"{live_server.url}/portal/orders/{bag.pk}/report-refund/")
    page.get_by_label("Tax refunded (USD)").fill(tax)
    page.get_by_label("Reason").select_option("CUSTOMER")
    page.get_by_label("Your refund reference").fill(reference)
    page.get_by_role("button", name="Review the refund").click()
    page.locator("#confirm-refund").click()


def test_a_reference_reused_for_a_different_refund_is_refused_side_by_side(live_server, page, screenshot):
    bag = notice_bag(external_id="00054321")
    portal_user(bag.merchant, username="reuser")
    for sku in bag.skus.all():
        assert sku.quantity_refunded == 0
    log_in(page, live_server, "reuser")

    report(page, live_server, bag, tax="0.25", reference="RF-7")
    page.wait_for_url(re.compile(r".*/portal/refunds/\d+/$"))
    report(page, live_server, bag, tax="0.50", reference="RF-7")

    conflict = page.locator("#reference-conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_contain_text("0.25 USD")
    expect(conflict).to_contain_text("0.50 USD")
    expect(conflict).to_contain_text("RF-7-2")
    expect(page.locator("#error-summary")).to_contain_text("give it a new reference")
    screenshot("portal-reference-reused")
    assert list(Refund.objects.filter(bag=bag).values_list("tax_amount", flat=True)) == [25]

    page.get_by_label("Your refund reference").fill("RF-7-2")
    page.get_by_role("button", name="Review the refund").click()
    page.get_by_role("button", name="Report refund of 0.50 USD").click()
    page.wait_for_url(re.compile(r".*/portal/refunds/\d+/$"))
    assert sorted(Refund.objects.filter(bag=bag).values_list("tax_amount", flat=True)) == [25, 50]

"""Dates on admin pages are in the operator's own zone, taken from the browser (Playwright's
`timezone_id` plays an operator in New York); the CSV export stays UTC ISO."""

import zoneinfo

import pytest
from playwright.sync_api import expect

from refunds.models import RefundEvent
from tests.factories import RefundFactory
from tests.refunds.admin.helpers import OPERATORS, log_in, staff_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ZONE = "America/New_York"


@pytest.fixture
def new_york_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id=ZONE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_a_refund_page_shows_its_dates_in_the_browsers_zone(live_server, new_york_page, screenshot_of):
    page = new_york_page
    operator = staff_in(OPERATORS, "olivia")
    refund = RefundFactory()
    event = RefundEvent.objects.create(refund=refund, kind=RefundEvent.Kind.RECORDED, actor="test", message="Recorded")
    log_in(page, live_server, operator)
    assert {c["name"]: c["value"] for c in page.context.cookies()}.get("tz") == ZONE

    page.goto(f"{live_server.url}/admin/refunds/refund/{refund.pk}/change/")

    local = event.date_created.astimezone(zoneinfo.ZoneInfo(ZONE))
    shown = local.strftime("%Y-%m-%d %H:%M:%S %Z")  # the timeline's format, to the second
    assert shown.endswith((" EST", " EDT"))
    expect(page.locator("#refund-timeline tbody tr").first).to_contain_text(shown)
    expect(page.locator("#refund-timeline")).not_to_contain_text(" UTC")
    screenshot_of(page, "operator-time-zone-new-york")

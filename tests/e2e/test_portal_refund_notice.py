"""Real browser: an SFCC Option 2 merchant logs in, reports a refund, and watches it go from
PROCESSING to COMPLETED on its status page.

Honest about the worker: without a broker the project runs tasks in-process right after the commit,
so the refund would be COMPLETED before the page loads. Here the worker is "not running yet": task
messages go to the in-memory broker and stay there, exactly as with Redis and a busy worker. The test
then does the worker's job with the real task, first while Stripe answers 503 once (the refund stays
PROCESSING with a retry scheduled), then again, which completes it. The status page refreshes itself
while PROCESSING, so the browser sees COMPLETED without a click.
"""

import re
from contextlib import contextmanager

import pytest

from refunds.models import Refund, RefundEvent, RefundStatus
from refunds.tasks import process_refund
from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind
from tests.factories import DEFAULT_PASSWORD
from tests.portal.conftest import notice_bag, portal_user
from violet_refunds.celery import app as celery_app

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@contextmanager
def worker_not_running():
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = True


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/portal/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/portal/")


def test_merchant_reports_a_refund_and_sees_it_processing_then_completed(live_server, page, screenshot):
    bag = notice_bag(external_id="00012345")
    portal_user(bag.merchant, username="sfcc-owner")
    first_sku = bag.skus.order_by("pk")[0]

    log_in(page, live_server, "sfcc-owner")
    assert "Option 2, Notify us of refunds" in page.content()
    screenshot("portal-home-sfcc")
    page.get_by_role("link", name="00012345").first.click()
    page.locator("#report-refund-top").click()  # at the top of the order page, with what is left
    page.wait_for_url(re.compile(r".*/portal/orders/\d+/report-refund/$"))

    page.get_by_label(first_sku.name).fill("1")
    page.get_by_label("Shipping refunded (USD)").fill("5.00")
    page.get_by_label("Tax refunded (USD)").fill("4.00")
    page.get_by_label("Reason").select_option("CUSTOMER")
    page.get_by_label("Your refund reference").fill("RF-1001")
    # The tiny inline script shows the total while typing: 50.00 + 5.00 + 4.00.
    assert page.locator("#refund-total").inner_text() == "59.00"
    screenshot("portal-report-refund")

    with worker_not_running():
        page.get_by_role("button", name="Review the refund").click()
        page.get_by_role("button", name="Report refund of 59.00 USD").click()
        page.wait_for_url(re.compile(r".*/portal/refunds/\d+/$"))
        refund = Refund.objects.get(bag=bag)
        assert page.locator("#refund-status").get_attribute("data-status") == "PROCESSING"
        assert "Refund reported. We are processing it now." in page.content()
        screenshot("portal-refund-processing")

        # The worker picks the message up while Stripe answers 503 once on the shopper refund.
        ledger.inject_fault(FaultKind.HTTP_503, times=1, path="/v1/refunds", method="POST")
        assert process_refund.apply(args=[refund.pk]).get() == RefundStatus.PROCESSING
        assert RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.RETRY_SCHEDULED).exists()
        page.reload()
        assert page.locator("#refund-status").get_attribute("data-status") == "PROCESSING"

        # The scheduled retry (its message carries the time it is due) runs and completes it.
        refund.refresh_from_db()
        due = refund.next_attempt_at.isoformat()
        assert process_refund.apply(args=[refund.pk], kwargs={"due": due}).get() == RefundStatus.COMPLETED

    # No click: the PROCESSING page refreshes itself.
    page.wait_for_selector('#refund-status[data-status="COMPLETED"]', timeout=15_000)
    content = page.content()
    assert "Completed" in content and "59.00 USD" in content and "RF-1001" in content
    screenshot("portal-refund-completed")
    refund.refresh_from_db()
    assert (refund.status, refund.amount, refund.external_id) == (RefundStatus.COMPLETED, 5900, "RF-1001")


def test_the_portal_fits_a_phone(live_server, page, screenshot):
    bag = notice_bag(external_id="00012399")
    portal_user(bag.merchant, username="phone-user")
    page.set_viewport_size({"width": 360, "height": 740})
    log_in(page, live_server, "phone-user")
    for name, path in (
        ("home", "/portal/"),
        ("order", f"/portal/orders/{bag.pk}/"),
        ("report", f"/portal/orders/{bag.pk}/report-refund/"),
    ):
        page.goto(f"{live_server.url}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, (path, overflow)
        screenshot(f"portal-phone-{name}")

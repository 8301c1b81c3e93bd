"""At 1400 px the deliveries, inbound events and refund events lists fit the window: every column
(status, attempts, the last error or outcome among them) lies inside the viewport, and the page has
no horizontal scroll, even with the long ids, URLs and errors real rows carry."""

import pytest
from playwright.sync_api import expect

from notifications.models import DeliveryStatus
from platforms.models import InboundEvent
from refunds.models import RefundEvent, RefundStatus
from tests.factories import (
    InboundEventFactory,
    OperatorFactory,
    RefundEventFactory,
    RefundFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
    WebhookEventFactory,
)
from tests.refunds.admin.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 1400
LONG_ERROR = (
    "Connection failed: ConnectionError: HTTPSConnectionPool(host='hooks.a-very-long-channel-name.example', "
    "port=443): Max retries exceeded with url: /violet/webhooks/refunds/updated?tenant=aurora-shopping-app-eu-west"
)


def long_rows():
    endpoint = WebhookEndpointFactory(url="https://hooks.a-very-long-channel-name.example/violet/webhooks/" + "x" * 120)
    for status in (DeliveryStatus.FAILED, DeliveryStatus.CREATED, DeliveryStatus.SUCCEEDED):
        event = WebhookEventFactory(app=endpoint.app, bag__order__app=endpoint.app)
        WebhookDeliveryFactory(
            event=event,
            endpoint=endpoint,
            status=status,
            attempts=7,
            last_status_code=503,
            last_error=LONG_ERROR,
            last_reply_excerpt='{"error":"upstream_unavailable","detail":"' + "y" * 300 + '"}',
        )
    for n, status in enumerate(
        (InboundEvent.Status.FAILED, InboundEvent.Status.AWAITING_ORDER, InboundEvent.Status.PROCESSED)
    ):
        InboundEventFactory(
            status=status,
            event_id=f"gid://shopify/WebhookEvent/{n}" + "8" * 60,
            topic="orders/updated-with-a-long-topic-name/and/a/path",
            attempts=3,
            outcome="The refund this event reports was refused by the refund rules: " + LONG_ERROR,
            error=LONG_ERROR,
        )
    refund = RefundFactory(status=RefundStatus.FAILED)
    for kind in (RefundEvent.Kind.RECORDED, RefundEvent.Kind.STEP_FAILED, RefundEvent.Kind.STATUS_CHANGED):
        RefundEventFactory(
            refund=refund,
            kind=kind,
            from_status=RefundStatus.PROCESSING,
            to_status=RefundStatus.PARTIALLY_COMPLETED,
            actor="operator:a.very.long.operator.username@example.com",
            message="Step failed: " + LONG_ERROR,
        )


@pytest.fixture
def wide_page(browser, live_server):
    long_rows()
    context = browser.new_context(viewport={"width": WIDTH, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(15_000)
    # A superuser: the lists span three apps, and a transactional test's flush leaves the groups with
    # only the permissions tests.refunds.admin.helpers recreates. Layout is what is tested here.
    log_in(page, live_server, OperatorFactory())
    yield page
    context.close()


def assert_columns_inside(page, columns):
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= WIDTH, f"the page scrolls sideways: {scroll_width} px wide"
    # The table sits in a box that scrolls on its own (Django's .results): nothing may hide there either.
    results = page.evaluate(
        "(() => { const r = document.querySelector('.results'); return [r.scrollWidth, r.clientWidth]; })()"
    )
    assert results[0] <= results[1], f"the table scrolls sideways inside its box: {results}"
    right_edge = min(WIDTH, page.locator(".results").bounding_box()["x"] + results[1])
    for column in columns:
        header = page.locator(f"#result_list thead th.column-{column}")
        box = header.bounding_box()
        assert box is not None, column
        assert box["x"] >= 0 and box["x"] + box["width"] <= right_edge, f"{column} is off-screen: {box}"
        cell = page.locator(f"#result_list tbody tr td.field-{column}, #result_list tbody tr th.field-{column}").first
        cell_box = cell.bounding_box()
        assert cell_box is not None and cell_box["x"] + cell_box["width"] <= right_edge, f"{column} cell: {cell_box}"
    # A status stays one word, not a column of letters.
    badge = page.locator("#result_list .refund-status").first
    if badge.count():
        assert badge.bounding_box()["height"] < 30


def test_the_three_lists_fit_1400_px(live_server, wide_page, screenshot_of):
    page = wide_page
    page.goto(f"{live_server.url}/admin/notifications/webhookdelivery/")
    assert_columns_inside(page, ["id", "status_column", "attempts", "last_status_code", "short_error", "date_finished"])
    screenshot_of(page, "operator-1400-deliveries")

    page.goto(f"{live_server.url}/admin/platforms/inboundevent/")
    assert_columns_inside(page, ["id", "event_id", "status", "attempts", "merchant", "date_created"])
    screenshot_of(page, "operator-1400-inbound-events")

    page.goto(f"{live_server.url}/admin/refunds/refundevent/")
    assert_columns_inside(page, ["id", "kind", "status_change", "actor", "short_message", "date_created"])
    screenshot_of(page, "operator-1400-refund-events")

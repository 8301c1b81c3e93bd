"""Real browser (issue 14): a channel refunded an order of an SFCC merchant, which Violet cannot
record on SFCC. The merchant finds it under "Refunds to mirror", records it on SFCC by hand, marks it
done, then undoes that."""

import pytest

from platforms.models import Platform
from refunds.models import RefundForwarding, RefundSource
from refunds.services import refund_record
from tests.e2e.test_portal_refund_notice import log_in
from tests.factories import MerchantFactory
from tests.portal.conftest import portal_user
from tests.world import funded_bag

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_merchant_marks_a_refund_mirrored_then_undoes_it(live_server, page, screenshot):
    merchant = MerchantFactory(platform=Platform.SFCC)
    portal_user(merchant, username="mirror-owner")
    bag = funded_bag(merchant=merchant, external_id="00077001")
    refund = refund_record(
        bag=bag, source=RefundSource.CHANNEL_API, actor="channel:1", amount=2500, enqueue=False
    ).refund

    log_in(page, live_server, "mirror-owner")
    page.get_by_role("link", name="Refunds to mirror").click()
    page.wait_for_url(f"{live_server.url}/portal/refunds-to-mirror/")
    row = page.locator(f"tr[data-task='{refund.forwarding.pk}']")
    assert "00077001" in row.inner_text() and "25.00 USD" in row.inner_text()
    assert page.locator("#mirror-open-count").inner_text() == "1 to do."
    screenshot("portal-mirror-open")

    page.get_by_role("button", name=f"Mark refund {refund.pk} as mirrored").click()
    page.wait_for_url(f"{live_server.url}/portal/refunds-to-mirror/")
    assert f"Refund #{refund.pk} of order 00077001 is marked mirrored." in page.content()
    assert page.locator("#mirror-open-count").inner_text() == "0 to do."
    assert "Mirrored" in page.locator(f"tr[data-task='{refund.forwarding.pk}']").inner_text()
    assert RefundForwarding.objects.get(pk=refund.forwarding.pk).mirror_done_at is not None
    screenshot("portal-mirror-done")

    page.get_by_role("button", name=f"Undo: refund {refund.pk} is not mirrored yet").click()
    page.wait_for_url(f"{live_server.url}/portal/refunds-to-mirror/")
    assert page.locator("#mirror-open-count").inner_text() == "1 to do."
    assert RefundForwarding.objects.get(pk=refund.forwarding.pk).mirror_done_at is None

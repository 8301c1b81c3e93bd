"""The merchant's "Refunds to mirror" list (issue 14): channel refunds not recorded on the platform,
scoped to the user's merchants, ticked off and back on (audited)."""

import pytest
from django.urls import reverse

from platforms.models import Platform
from refunds.models import ForwardingState, RefundEvent, RefundSource
from refunds.services import refund_record
from tests.factories import MerchantFactory
from tests.portal.conftest import logged_in, portal_user
from tests.world import funded_bag

pytestmark = pytest.mark.django_db


def channel_refund(bag, amount=2000):
    return refund_record(
        bag=bag, source=RefundSource.CHANNEL_API, actor="channel:1", amount=amount, enqueue=False
    ).refund


def test_the_list_shows_this_merchants_unforwarded_channel_refunds_only():
    merchant = MerchantFactory(platform=Platform.SFCC)
    user = portal_user(merchant, username="sfcc-owner")
    mine = channel_refund(funded_bag(merchant=merchant, external_id="SF-1"))
    channel_refund(funded_bag(merchant=MerchantFactory(platform=Platform.SFCC), external_id="SF-2"))

    page = logged_in(user).get(reverse("portal:mirror"))

    assert page.status_code == 200
    rows = [row["refund"].pk for row in page.context["rows"]]
    assert rows == [mine.pk]
    body = page.content.decode()
    assert "SF-1" in body and "SF-2" not in body
    assert "20.00 USD" in body
    assert "SFCC has no API to record a refund" in body
    assert page.context["open_count"] == 1


def test_done_then_undo_is_recorded_on_the_refund():
    merchant = MerchantFactory(platform=Platform.ECWID)
    user = portal_user(merchant)
    refund = channel_refund(funded_bag(merchant=merchant, external_id="K8XTQ"))
    client = logged_in(user)
    task = refund.forwarding
    assert task.state == ForwardingState.NOT_FORWARDED

    response = client.post(reverse("portal:mirror_mark", args=[task.pk]), {"done": "1"})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.mirror_done_at is not None and task.mirror_done_by == user
    assert logged_in(user).get(reverse("portal:mirror")).context["open_count"] == 0

    client.post(reverse("portal:mirror_mark", args=[task.pk]), {"done": "0"})
    task.refresh_from_db()
    assert task.mirror_done_at is None
    notes = list(RefundEvent.objects.filter(refund=refund, kind=RefundEvent.Kind.NOTE).values_list("data", flat=True))
    assert notes == [{"mirror_done": True}, {"mirror_done": False}]


def test_another_merchants_task_is_a_404():
    user = portal_user(MerchantFactory(platform=Platform.SFCC))
    other = channel_refund(funded_bag(merchant=MerchantFactory(platform=Platform.SFCC), external_id="X-9"))

    response = logged_in(user).post(reverse("portal:mirror_mark", args=[other.forwarding.pk]), {"done": "1"})

    assert response.status_code == 404
    other.forwarding.refresh_from_db()
    assert other.forwarding.mirror_done_at is None

"""Issue 14, "mixed sources never strand a shopper": a channel refunds 20.00 of a 118.00 Shopify bag
that Shopify never heard of, then the merchant refunds the whole order in Shopify (118.00). The
platform's total is the merchant's intent: the 98.00 still refundable is recorded, linked to the
platform event, and an operator is told; the shopper ends at 118.00, one refund per source."""

import pytest
from rest_framework.test import APIClient

from platforms.models import InboundEvent, Platform
from refunds.admin.triage import OpenErrorsFilter  # noqa: F401 - the triage filter the note shows under
from refunds.errors import RefundErrorCode
from refunds.models import ForwardingState, Refund, RefundError, RefundSource, RefundStatus
from tests.platforms.delivery import SHOPIFY_SECRET, deliver, fixture_json
from tests.platforms.forwarding_world import channel_refund, funded_store, money_moved
from tests.refunds.api.conftest import make_channel

pytestmark = pytest.mark.django_db


def test_the_20_then_full_118_story_ends_with_the_shopper_refunded_118(settings):
    channel = make_channel()
    store = funded_store(
        channel,
        Platform.SHOPIFY,
        order_id="450789469",
        line_ids=("466157049", "518995019"),
        # Connected for webhooks, but without the token to write: the channel refund is not forwarded.
        credentials={"shop_domain": "blue-mug.myshopify.com"},
        secret=SHOPIFY_SECRET,
    )

    response = channel_refund(APIClient(), channel, store, {"amount_refunded": 2000}, key="twenty")
    assert response.status_code == 201
    first = Refund.objects.get(bag=store.bag)
    assert first.forwarding.state == ForwardingState.NOT_FORWARDED
    assert first.status == RefundStatus.COMPLETED

    # The merchant refunds the whole order in Shopify: refunds/create for 118.00, every line.
    full = fixture_json("shopify", "orders_cancelled_with_refund.json")["refunds"][0]
    deliver(store, full, topic="refunds/create", event_id="full-refund")

    event = InboundEvent.objects.get(event_id="full-refund")
    assert event.status == InboundEvent.Status.PROCESSED, event.outcome
    second = Refund.objects.get(bag=store.bag, source=RefundSource.PLATFORM_WEBHOOK)
    assert second.inbound_event == event
    assert second.external_id == str(full["id"])
    assert second.amount == 11800 - 2000
    assert second.status == RefundStatus.COMPLETED
    assert money_moved(first)[0] + money_moved(second)[0] == 11800
    assert Refund.objects.filter(bag=store.bag).count() == 2  # one per source
    note = RefundError.objects.get(refund=second)
    assert note.error_code == RefundErrorCode.PLATFORM_AMOUNT_ADJUSTED and not note.resolved
    assert "11800" in note.error_message and "9800" in note.error_message
    assert "another source" in event.outcome
    store.bag.refresh_from_db()
    assert store.bag.financial_status == "REFUNDED"

"""The soak's loopback Shopify (soak/receiver.py) takes a forwarded channel refund over real HTTP,
and the soak's forwarding invariant reads the outcome: what the soak's Shopify merchant now does."""

import pytest
from rest_framework.test import APIClient

from platforms.models import Platform
from refunds.models import ForwardingState, Refund, RefundStatus
from soak.invariants import check_forwarding
from soak.receiver import FIRST_SHOPIFY_REFUND_ID, Receiver
from tests.platforms.forwarding_world import channel_refund, funded_store, money_moved
from tests.refunds.api.conftest import make_channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    receiver = Receiver().start()
    settings.SHOPIFY_ADMIN_API_URL = receiver.shopify_admin_api_url
    settings.OUTBOUND_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    yield receiver
    receiver.stop()


def test_a_channel_refund_is_forwarded_to_the_soak_shopify_once_then_its_money_moves(receiver):
    channel = make_channel()
    store = funded_store(
        channel,
        Platform.SHOPIFY,
        order_id="7000000001",
        line_ids=("71", "72"),
        credentials={"shop_domain": "soak-shop.myshopify.com", "access_token": "shpat_soak"},
    )

    response = channel_refund(APIClient(), channel, store, {"amount_refunded": 2000}, key="soak-1")

    assert response.status_code == 201
    refund = Refund.objects.get(bag=store.bag)
    assert refund.forwarding.state == ForwardingState.ACCEPTED
    assert refund.external_id == str(FIRST_SHOPIFY_REFUND_ID)
    assert refund.status == RefundStatus.COMPLETED and money_moved(refund)[0] == 2000
    [held] = receiver.shopify_refunds["7000000001"]
    assert held["note"] == f"[violet-refund:{refund.pk}]"
    assert held["transactions"][0]["amount"] == "20.00"
    assert all(check.ok for check in check_forwarding([refund], receiver))

"""A funded bag on a platform that can be written to, a channel to refund it through the API, and
readers of what moved: the world of the forwarding tests (issue 14)."""

from __future__ import annotations

import json

from django.test import TestCase

from payments.models import ShopperRefund, TransferReversal
from platforms.models import Platform
from refunds.models import Refund
from tests.factories import MerchantFactory, StoreConnectionFactory
from tests.platforms.bigcommerce_store import ACCESS_TOKEN, MUG, STORE_HASH, TOWEL
from tests.platforms.conftest import Store
from tests.platforms.delivery import WOOCOMMERCE_STORE_URL
from tests.refunds.api.conftest import Channel
from tests.world import funded_bag


def funded_store(
    channel: Channel, platform: str, *, order_id: str, line_ids: tuple[str, str], credentials: dict, secret: str = ""
) -> Store:
    """2 x mug (40.00) + 1 x towel (20.00), shipping 10.00, tax 8.00 = 118.00, charged and paid out."""
    merchant = MerchantFactory(platform=platform)
    connection = StoreConnectionFactory(merchant=merchant, credentials=credentials, webhook_secret=secret)
    bag = funded_bag(
        skus=((4000, 2), (2000, 1)), shipping=1000, tax=800, app=channel.app, merchant=merchant, external_id=order_id
    )
    mug, towel = list(bag.skus.order_by("pk"))
    mug.external_id, towel.external_id = line_ids
    mug.save(update_fields=["external_id"])
    towel.save(update_fields=["external_id"])
    return Store(merchant=merchant, connection=connection, bag=bag, mug=mug, towel=towel)


# The platforms' stores of the captured fixtures: their order id, line item ids and credentials.
FUNDED_STORES = {
    Platform.SHOPIFY: {
        "order_id": "450789469",
        "line_ids": ("466157049", "518995019"),
        "credentials": {"shop_domain": "blue-mug.myshopify.com", "access_token": "shpat_test"},
    },
    Platform.BIGCOMMERCE: {
        "order_id": "250",
        "line_ids": (MUG, TOWEL),
        "credentials": {"store_hash": STORE_HASH, "access_token": ACCESS_TOKEN},
    },
    Platform.WOOCOMMERCE: {
        "order_id": "5120",
        "line_ids": ("311", "312"),
        "credentials": {"store_url": WOOCOMMERCE_STORE_URL, "consumer_key": "ck_x", "consumer_secret": "cs_x"},
    },
}


def funded_platform_store(channel: Channel, platform: str, *, secret: str = "") -> Store:
    """The platform's store of the captured fixtures (FUNDED_STORES), funded."""
    return funded_store(channel, platform, secret=secret, **FUNDED_STORES[platform])


def channel_refund(api_client, channel: Channel, store: Store, body: dict, key: str = "k-1"):
    """POST the channel refund and run everything it queued (forwarding, then the engine), eagerly."""
    url = f"/v1/orders/{store.bag.order_id}/bags/{store.bag.pk}/refunds"
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = api_client.post(url, body, format="json", headers={**channel.headers, "Idempotency-Key": key})
    return response


def run_on_commit(function, *args, **kwargs):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return function(*args, **kwargs)


def money_moved(refund: Refund) -> tuple[int, int]:
    """(shopper refunded, transfer reversals done) for the refund, minor units."""
    shopper = sum(
        ShopperRefund.objects.filter(refund=refund, status=ShopperRefund.Status.SUCCEEDED).values_list(
            "amount", flat=True
        )
    )
    reversed_ = sum(
        TransferReversal.objects.filter(refund=refund, status=TransferReversal.Status.COMPLETE).values_list(
            "amount", flat=True
        )
    )
    return shopper, reversed_


def nothing_planned(refund: Refund) -> bool:
    return (
        not ShopperRefund.objects.filter(refund=refund).exists()
        and not TransferReversal.objects.filter(refund=refund).exists()
    )


def request_body(call) -> dict:
    return json.loads(call.request.body)


SHOPIFY = Platform.SHOPIFY

"""Platform test fixtures: a merchant whose bag matches the captured fixtures (order 450789469 etc.,
lines by platform id), per platform. Loading, signing and posting deliveries: tests/platforms/delivery.py."""

from dataclasses import dataclass

import pytest
from django.urls import reverse

from platforms.clients.base import PlatformHttpClient
from platforms.models import Platform, SfccRefundMode
from tests.factories import BagFactory, MerchantFactory, OrderSkuFactory, StoreConnectionFactory
from tests.platforms.bigcommerce_store import ACCESS_TOKEN, MUG, STORE_HASH, TOWEL, WEBHOOK_SECRET
from tests.platforms.delivery import (
    ECWID_CLIENT_SECRET,
    SHOPIFY_SECRET,
    fixture_text,  # noqa: F401 - imported from here by tests/notifications/test_outbox.py
    post_webhook,
    wix_key_pair,
)
from tests.refunds.api.conftest import channel  # noqa: F401 - a fixture: the channel app refunds go through


@pytest.fixture(autouse=True)
def _no_client_backoff(monkeypatch, settings):
    # Client retries still happen, without sleeping between them; so do the read-backs of a lost
    # cancel on a platform that cancels later (platforms.cancellation).
    monkeypatch.setattr(PlatformHttpClient, "backoff_seconds", 0)
    settings.CANCELLATION_READBACK_BACKOFF_SECONDS = 0


@pytest.fixture(scope="session")
def wix_keys():
    """(private PEM, public PEM) of the key the test Wix signs with."""
    return wix_key_pair()


@dataclass
class Store:
    """A merchant, its connection and one bag of 2 × mug (40.00) + 1 × towel (20.00), shipping 10.00,
    tax 8.00: total 118.00 USD, the amounts of every fixture."""

    merchant: object
    connection: object
    bag: object
    mug: object
    towel: object

    def url(self, platform_slug: str | None = None) -> str:
        slug = platform_slug or self.merchant.platform.lower()
        return reverse("platforms:webhook", kwargs={"platform": slug, "public_id": str(self.connection.public_id)})


def make_store(
    platform: str,
    *,
    order_id: str,
    line_ids: tuple[str, str],
    webhook_secret: str = "",
    credentials: dict | None = None,
    placed_at=None,
    sfcc_refund_mode: str = "",
) -> Store:
    merchant_kwargs = {"platform": platform}
    if platform == Platform.SFCC:
        merchant_kwargs["sfcc_refund_mode"] = sfcc_refund_mode or SfccRefundMode.CANCEL_AS_REFUND
    merchant = MerchantFactory(**merchant_kwargs)
    connection = StoreConnectionFactory(merchant=merchant, webhook_secret=webhook_secret, credentials=credentials or {})
    bag_kwargs = {"placed_at": placed_at} if placed_at else {}
    bag = BagFactory(
        merchant=merchant, external_id=order_id, sub_total=10000, shipping_total=1000, tax_total=800, **bag_kwargs
    )
    mug = OrderSkuFactory(bag=bag, external_id=line_ids[0], sku_id="MUG-BLUE", quantity=2, price=4000)
    towel = OrderSkuFactory(bag=bag, external_id=line_ids[1], sku_id="TOWEL-1", quantity=1, price=2000)
    return Store(merchant=merchant, connection=connection, bag=bag, mug=mug, towel=towel)


@pytest.fixture
def shopify_store(db):
    return make_store(
        Platform.SHOPIFY,
        order_id="450789469",
        line_ids=("466157049", "518995019"),
        webhook_secret=SHOPIFY_SECRET,
        credentials={"shop_domain": "blue-mug.myshopify.com", "access_token": "shpat_test"},
    )


@pytest.fixture
def ecwid_store(db):
    return make_store(
        Platform.ECWID,
        order_id="K8XTQ",
        line_ids=("123456789", "123456790"),
        webhook_secret=ECWID_CLIENT_SECRET,
        credentials={"store_id": "1003", "access_token": "secret_ecwidtoken"},
    )


@pytest.fixture
def bc_store(db):
    return make_store(
        Platform.BIGCOMMERCE,
        order_id="250",
        line_ids=(MUG, TOWEL),
        webhook_secret=WEBHOOK_SECRET,
        credentials={"store_hash": STORE_HASH, "access_token": ACCESS_TOKEN},
    )


# Funded stores (charged and paid out at the Stripe sandbox, ordered through `channel`): the world of
# the forwarding and cancellation tests, built by tests/platforms/forwarding_world.py (which imports
# Store from here, hence the imports inside the fixtures).


@pytest.fixture
def funded_shopify(channel) -> Store:  # noqa: F811 - pytest fixture
    from tests.platforms.forwarding_world import funded_platform_store

    return funded_platform_store(channel, Platform.SHOPIFY)


@pytest.fixture
def funded_bigcommerce(channel) -> Store:  # noqa: F811 - pytest fixture
    from tests.platforms.forwarding_world import funded_platform_store

    return funded_platform_store(channel, Platform.BIGCOMMERCE)


@pytest.fixture
def funded_woocommerce(channel) -> Store:  # noqa: F811 - pytest fixture
    from tests.platforms.forwarding_world import funded_platform_store

    return funded_platform_store(channel, Platform.WOOCOMMERCE)


def shopify_post(client, store: Store, body: bytes, *, topic: str, webhook_id: str, **options):
    """The old posting helper, kept for tests outside tests/platforms (tests/notifications/test_outbox.py);
    use tests.platforms.delivery.deliver / post_webhook instead."""
    return post_webhook(store, body=body, topic=topic, event_id=webhook_id, client=client, **options)


def ecwid_order_url(store_id: str, order_id: str) -> str:
    return f"https://app.ecwid.com/api/v3/{store_id}/orders/{order_id}"

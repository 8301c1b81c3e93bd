"""Platform test helpers: load captured fixtures, sign deliveries the way each platform does, and
build a merchant whose bag matches the fixtures (order 450789469 etc., lines by platform id)."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.urls import reverse

from platforms.adapters.ecwid import ecwid_signature
from platforms.adapters.shopify import shopify_hmac
from platforms.clients.base import PlatformHttpClient
from platforms.models import Platform, SfccRefundMode
from tests.factories import BagFactory, MerchantFactory, OrderSkuFactory, StoreConnectionFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

SHOPIFY_SECRET = "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"
ECWID_CLIENT_SECRET = "Ecw1dCl1entS3cretF0rTests"


def fixture_text(platform: str, name: str) -> str:
    return (FIXTURES / platform / name).read_text()


def fixture_json(platform: str, name: str) -> dict:
    return json.loads(fixture_text(platform, name))


@pytest.fixture(autouse=True)
def _no_client_backoff(monkeypatch):
    # Client retries still happen, without sleeping between them.
    monkeypatch.setattr(PlatformHttpClient, "backoff_seconds", 0)


@pytest.fixture(scope="session")
def wix_keys():
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def wix_jwt(envelope: dict, private_pem: str) -> bytes:
    """Wix's layers: JWT claims {data: "<json>"} -> {eventType, instanceId, data: "<json>", identity: "<json>"}."""
    layer = {
        "eventType": envelope["eventType"],
        "instanceId": envelope["instanceId"],
        "data": json.dumps(envelope["data"]),
        "identity": json.dumps(envelope["identity"]),
    }
    now = int(time.time())
    return jwt.encode(
        {"data": json.dumps(layer), "iat": now, "exp": now + 3600}, private_pem, algorithm="RS256"
    ).encode()


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


def shopify_post(client, store: Store, body: bytes, *, topic: str, webhook_id: str, secret=SHOPIFY_SECRET, **extra):
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_hmac(secret, body),
        "X-Shopify-Shop-Domain": "blue-mug.myshopify.com",
        "X-Shopify-API-Version": "2026-01",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": f"evt-{webhook_id}",
        "X-Shopify-Triggered-At": "2026-03-03T13:41:20.000Z",
        **extra.pop("headers", {}),
    }
    return client.post(store.url(), data=body, content_type="application/json", headers=headers, **extra)


def ecwid_post(client, store: Store, payload: dict, *, secret=ECWID_CLIENT_SECRET, body: bytes | None = None):
    signature = ecwid_signature(secret, payload["eventCreated"], payload["eventId"])
    return client.post(
        f"{store.url()}?eventtype={payload['eventType']}",
        data=body if body is not None else json.dumps(payload).encode(),
        content_type="application/json",
        headers={"X-Ecwid-Webhook-Signature": signature},
    )


def ecwid_order_url(store_id: str, order_id: str) -> str:
    return f"https://app.ecwid.com/api/v3/{store_id}/orders/{order_id}"

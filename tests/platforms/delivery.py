"""Deliver a platform webhook to the receiver the way the platform does, in one call.

In the style of Zulip's `send_and_test_stream_message`: a captured fixture (tests/fixtures/<platform>/),
a few changes, signed as that platform signs (Shopify's base64 HMAC header, WooCommerce's
X-WC-Webhook-Signature, Ecwid's eventCreated.eventId signature, Wix's RS256 JWT, BigCommerce's secret
in the Authorization header), posted to /webhooks/<platform>/<public id>/ and processed:

    delivery = deliver(shopify_store, "refunds_create", event_id="wh-1")
    assert delivery.event.status == InboundEvent.Status.PROCESSED

`post_webhook` takes the same arguments and only posts (what the receiver answers, nothing processed):
the receiver's own tests use it.
"""

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.http import HttpResponse
from django.test import Client, TestCase

from platforms.adapters.ecwid import ecwid_signature
from platforms.adapters.shopify import shopify_hmac
from platforms.adapters.woocommerce import woocommerce_signature
from platforms.models import InboundEvent, Platform

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

SHOPIFY_SECRET = "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"
ECWID_CLIENT_SECRET = "Ecw1dCl1entS3cretF0rTests"

# Shopify names the topic in a header, not in the body: the topic of each captured fixture.
SHOPIFY_FIXTURE_TOPICS = {
    "refunds_create": "refunds/create",
    "orders_cancelled_with_refund": "orders/cancelled",
    "orders_cancelled_without_refund": "orders/cancelled",
    "customers_redact": "customers/redact",
    "customers_data_request": "customers/data_request",
    "shop_redact": "shop/redact",
    "app_uninstalled": "app/uninstalled",
}
DEFAULT_EVENT_IDS = {Platform.SHOPIFY: "wh-1", Platform.WOOCOMMERCE: "3f2a7c9e1b5d48e6a0c4f8b2d6e1a9c3"}
WOOCOMMERCE_STORE_URL = "https://woo.example.com"


def fixture_text(platform: str, name: str) -> str:
    return (FIXTURES / platform / name).read_text()


def fixture_json(platform: str, name: str) -> dict:
    return json.loads(fixture_text(platform, name))


@functools.cache
def wix_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM): the key Wix signs with in tests; the public one is the connection's secret."""
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


# --- Building the request ---

REMOVED = object()
"""A value in `changes` that deletes the key, e.g. changes={"hash": REMOVED}."""

_SIGNED = object()  # default secret: the one the store's connection was made with


def _apply(payload: dict, path: str, value) -> None:
    """Set (or with REMOVED delete) a dotted path, list indexes as numbers: "transactions.0.status"."""
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    key = int(last) if isinstance(target, list) else last
    if value is REMOVED:
        del target[key]
    else:
        target[key] = value


@dataclass
class _Request:
    platform: str
    payload: dict | None  # None: only raw bytes were given
    body: bytes | None  # Wix: None until the JWT is made
    event_id: str | None
    topic: str | None
    secret: str | None
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"
    query: str = ""


def _shopify(request: _Request) -> None:
    event_id = request.event_id or DEFAULT_EVENT_IDS[Platform.SHOPIFY]
    if not request.topic:
        raise TypeError("deliver(): a Shopify delivery of a changed payload needs topic=")
    request.headers = {
        "X-Shopify-Topic": request.topic,
        "X-Shopify-Shop-Domain": "blue-mug.myshopify.com",
        "X-Shopify-API-Version": "2026-01",
        "X-Shopify-Webhook-Id": event_id,
        "X-Shopify-Event-Id": f"evt-{event_id}",
        "X-Shopify-Triggered-At": "2026-03-03T13:41:20.000Z",
    }
    if request.secret is not None:
        request.headers["X-Shopify-Hmac-Sha256"] = shopify_hmac(request.secret, request.body)


def _ecwid(request: _Request) -> None:
    # Ecwid signs two fields of the body, not the body: eventCreated.eventId.
    payload = request.payload or {}
    if "eventType" in payload:
        request.query = f"?eventtype={payload['eventType']}"
    if request.secret is not None:
        signature = ecwid_signature(request.secret, payload["eventCreated"], payload["eventId"])
        request.headers["X-Ecwid-Webhook-Signature"] = signature


def _wix(request: _Request) -> None:
    # Wix posts a JWT as the body; the "secret" here is the private key it signs with.
    if request.topic:
        raise TypeError("deliver(): a Wix event's topic is its entityFqdn and slug; change those instead")
    if request.body is None:
        request.body = wix_jwt(request.payload, request.secret)
    request.content_type = "text/plain"


def _bigcommerce(request: _Request) -> None:
    # BigCommerce signs nothing: the hook's own header carries the shared secret.
    if request.secret is not None:
        request.headers["Authorization"] = f"Bearer {request.secret}"


def _woocommerce(request: _Request) -> None:
    request.headers = {
        "X-WC-Webhook-Source": f"{WOOCOMMERCE_STORE_URL}/",
        "X-WC-Webhook-Topic": request.topic or "order.updated",
        "X-WC-Webhook-Resource": "order",
        "X-WC-Webhook-Event": "updated",
        "X-WC-Webhook-ID": "12",
        "X-WC-Webhook-Delivery-ID": request.event_id or DEFAULT_EVENT_IDS[Platform.WOOCOMMERCE],
        "User-Agent": "WooCommerce/9.6.2 Hookshot (WordPress/6.7.2)",
    }
    if request.secret is not None:
        request.headers["X-WC-Webhook-Signature"] = woocommerce_signature(request.secret, request.body)


_SIGN = {
    Platform.SHOPIFY: _shopify,
    Platform.ECWID: _ecwid,
    Platform.WIX: _wix,
    Platform.BIGCOMMERCE: _bigcommerce,
    Platform.WOOCOMMERCE: _woocommerce,
}
# Where a platform carries the event id and the topic in the body (the others: in headers).
_EVENT_ID_PATHS = {Platform.ECWID: "eventId", Platform.WIX: "data.id", Platform.BIGCOMMERCE: "hash"}
_TOPIC_PATHS = {Platform.ECWID: "eventType", Platform.BIGCOMMERCE: "scope"}


def post_webhook(
    store,
    fixture: str | dict | None = None,
    *,
    changes: dict | None = None,
    event_id: str | None = None,
    topic: str | None = None,
    secret=_SIGNED,
    body: bytes | None = None,
    headers: dict | None = None,
    content_type: str | None = None,
    url: str | None = None,
    client: Client | None = None,
) -> HttpResponse:
    """POST one delivery to the store's webhook URL, signed as its platform signs; nothing is processed.

    fixture: a file name under tests/fixtures/<platform>/ (".json" optional), or the payload itself.
        A fixture sent unchanged goes as the file's exact bytes; otherwise the payload's json.dumps().
    changes: {"dotted.path.0.key": value} applied to the payload (REMOVED deletes the key).
    event_id, topic: where the platform carries them (header or body field); defaults: the fixture's
        (Shopify: event id "wh-1", topic by fixture name; WooCommerce: one fixed delivery id, order.updated).
    secret: the connection's by default (Wix: the test private key); another one signs wrongly;
        None sends no signature at all.
    body: these bytes instead of the payload's JSON (Shopify and WooCommerce sign them; Ecwid still
        signs the payload's fields).
    headers: extra headers, replacing the platform's; a None value removes that header.
    url: another URL than the store's; client: another test client than a fresh one.
    """
    platform = store.merchant.platform
    payload, raw = None, None
    if isinstance(fixture, str):
        name = fixture.removesuffix(".json")
        raw = fixture_text(platform.lower(), f"{name}.json").encode()
        payload = json.loads(raw)
        if platform == Platform.SHOPIFY and topic is None:
            topic = SHOPIFY_FIXTURE_TOPICS.get(name)
    elif fixture is not None:
        payload = json.loads(json.dumps(fixture))  # a copy: the caller's dict stays as it was
    changes = dict(changes or {})
    if event_id is not None and platform in _EVENT_ID_PATHS:
        changes[_EVENT_ID_PATHS[platform]] = event_id
    if topic is not None and platform in _TOPIC_PATHS:
        changes[_TOPIC_PATHS[platform]] = topic
    if changes:
        for path, value in changes.items():
            _apply(payload, path, value)
        raw = None
    if secret is _SIGNED:
        secret = wix_key_pair()[0] if platform == Platform.WIX else store.connection.webhook_secret
    if body is None and platform != Platform.WIX:
        body = raw if raw is not None else json.dumps(payload).encode()
    request = _Request(platform, payload, body, event_id=event_id, topic=topic, secret=secret)
    _SIGN[platform](request)
    sent = {name: value for name, value in {**request.headers, **(headers or {})}.items() if value is not None}
    return (client or Client()).post(
        (url or store.url()) + request.query,
        data=request.body,
        content_type=content_type or request.content_type,
        headers=sent,
    )


@dataclass
class Delivery:
    """One delivery: the receiver's answer and the on-commit callbacks it queued (already run)."""

    response: HttpResponse
    enqueued: list
    platform: str

    @property
    def event(self) -> InboundEvent:
        """The stored event the delivery named (for a duplicate: the one stored first)."""
        return InboundEvent.objects.get(platform=self.platform, event_id=self.response.json()["event_id"])


def deliver(store, fixture: str | dict | None = None, **options) -> Delivery:
    """post_webhook(), then run what the receiver queued on commit: the processing task, eagerly.

    In a transaction=True test the callbacks run at the real commit and `enqueued` stays empty.
    """
    with TestCase.captureOnCommitCallbacks(execute=True) as enqueued:
        response = post_webhook(store, fixture, **options)
    return Delivery(response=response, enqueued=enqueued, platform=store.merchant.platform)


def assert_rejected(response: HttpResponse, status: int, error_code: str) -> None:
    """The receiver refused the delivery: that status, the JSON error body, and nothing stored."""
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"status", "message", "error_code", "timestamp"}
    assert body["status"] == status
    assert body["error_code"] == error_code
    assert isinstance(body["timestamp"], int) and body["message"]
    assert not InboundEvent.objects.exists()

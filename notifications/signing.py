"""The signature on every delivery, and the headers that travel with it (docs/violet-api.md, Outbound webhooks).

`X-Violet-Hmac` is Base64(HMAC-SHA256(raw body, signing secret)). A channel recomputes it over the
exact bytes it received (before parsing JSON) and compares in constant time; see `signature_matches`.
"""

import base64
import hashlib
import hmac
import secrets

HMAC_HEADER = "X-Violet-Hmac"
EVENT_ID_HEADER = "X-Violet-Event-Id"
EVENT_ID_SOURCE_HEADER = "X-Violet-Event-Id-Source"
WEBHOOK_ID_HEADER = "X-Violet-Webhook-Id"
TOPIC_HEADER = "X-Violet-Topic"
ORDER_ID_HEADER = "X-Violet-Order-Id"
BAG_ID_HEADER = "X-Violet-Bag-Id"
ENTITY_LENGTH_HEADER = "X-Violet-Entity-Length"
USER_AGENT = "violet-refunds-webhooks/1.0"

SECRET_PREFIX = "whsec_"


def signing_secret_generate() -> str:
    """A new endpoint secret: 256 random bits, URL-safe, recognisable by its prefix."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(body: bytes, secret: str, signature: str) -> bool:
    """What a channel does on receipt: recompute over the raw bytes, compare in constant time."""
    return hmac.compare_digest(sign(body, secret).encode(), (signature or "").encode())

"""Least data at ingest (issue #22 item 2).

What a webhook delivery leaves behind:
- headers: only the names on the platform's allow-list (`stored_headers` of its adapter: topic,
  event/delivery id, shop domain, API version, timestamps, webhook id) plus the content type; never
  a signature, an Authorization/API-key value or a cookie, whatever the platform sends;
- the body, less capability fields: values that let their holder act on the shopper's order
  (Shopify `order_status_url` and its `key`, `token`/`cart_token`/`checkout_token`, WooCommerce
  `order_key` and the `payment_url` that embeds it). Each value becomes "[redacted]" by a textual
  substitution, so every other byte stays as sent (amounts keep their exact decimal text);
- `body_sha256`, the digest of the body as received: what remains once the body itself is gone;
- `event_minimize`: an event that settles with no refund signal (IGNORED: unknown topics, orders
  that are not the network's) keeps ids, topic, outcome and the hash, not the body.

Events that may still be processed (RECEIVED, RETRYING, AWAITING_ORDER, FAILED) keep their body.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from django.utils import timezone

from platforms.models import InboundEvent

# Sent by every platform; harmless and useful when reading an event.
COMMON_STORED_HEADERS = ("Content-Type",)

# JSON keys whose string value is a capability (a bearer secret to the shopper's order), anywhere
# in a body. Shopify Order: order_status_url (…/orders/<token>/authenticate?key=…), token,
# cart_token, checkout_token; WooCommerce order: order_key, payment_url (…&key=wc_order_…).
CAPABILITY_KEYS = (
    "order_status_url",
    "token",
    "cart_token",
    "checkout_token",
    "order_key",
    "payment_url",
    "access_token",
)
REDACTED = "[redacted]"
_CAPABILITY_VALUE = re.compile(
    r'("(?:' + "|".join(re.escape(key) for key in CAPABILITY_KEYS) + r')"\s*:\s*)"(?:[^"\\]|\\.)*"'
)


def headers_to_store(headers: Mapping[str, str], allowed: Iterable[str]) -> dict[str, str]:
    """The allow-listed headers of a request (names compared case-insensitively, kept as sent)."""
    wanted = {name.lower() for name in (*COMMON_STORED_HEADERS, *allowed)}
    return {name: value for name, value in headers.items() if name.lower() in wanted}


def body_sha256(body: str | bytes) -> str:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return hashlib.sha256(raw).hexdigest()


def strip_capabilities(body: str) -> str:
    """The body with every capability value replaced by "[redacted]" (JSON bodies; a JWT or any
    other text has no such keys in the clear and is returned as is)."""
    return _CAPABILITY_VALUE.sub(lambda match: f'{match.group(1)}"{REDACTED}"', body)


# Statuses whose event may be processed again automatically or by an operator: they keep the body.
STATUSES_NEEDING_BODY = (
    InboundEvent.Status.RECEIVED,
    InboundEvent.Status.RETRYING,
    InboundEvent.Status.AWAITING_ORDER,
    InboundEvent.Status.FAILED,
)


def event_minimize(event: InboundEvent) -> bool:
    """Drop the body and headers of an event that implies no refund (IGNORED with a connection).
    An IGNORED event without a connection keeps them until retention: it is replayed once its store
    is connected (app-level deliveries). Returns whether anything was dropped."""
    if event.status != InboundEvent.Status.IGNORED or event.connection_id is None or event.redacted_at:
        return False
    return bool(InboundEvent.objects.filter(pk=event.pk, redacted_at__isnull=True).update(**redacted_fields()))


def redacted_fields() -> dict:
    """The field values of a redacted event (body, headers and sender address gone; hash, ids,
    topic, outcome and links to refunds stay)."""
    return {"body": "", "headers": {}, "remote_ip": None, "redacted_at": timezone.now()}

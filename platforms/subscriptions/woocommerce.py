"""WooCommerce webhooks through `/wp-json/wc/v3/webhooks` (issue #24).

GET `webhooks?per_page=100&page=n` (a JSON array; `X-WP-TotalPages` says how many pages) lists the
store's webhooks, POST `webhooks` `{name, topic, delivery_url, secret, status: "active"}` creates
one, PUT `webhooks/{id}` corrects it (`status: "active"` re-activates a `paused` or `disabled` one),
DELETE `webhooks/{id}?force=true` removes it (webhooks cannot be trashed). WooCommerce disables a
webhook for good, silently, after `woocommerce_max_webhook_delivery_failures` (5) failed deliveries
in a row: the daily sync is what turns it back on. The secret is never shown back (REST context
`view`), so the sync remembers a fingerprint of the one it registered.
"""

from __future__ import annotations

import json
from decimal import Decimal

import requests

from platforms.clients.base import PlatformResponseInvalid
from platforms.clients.woocommerce import WooCommerceClient
from platforms.subscriptions.base import RemoteSubscription

PAGE_SIZE = 100
MAX_PAGES = 10
# The name a webhook the product creates carries in WooCommerce > Settings > Advanced > Webhooks.
WEBHOOK_NAME = "Violet refunds: {topic}"
ACTIVE = "active"


class _WebhooksClient(WooCommerceClient):
    """The store's client, also accepting the JSON array a collection GET answers: the shared
    client's contract is "a JSON object"; a list is wrapped as {"items": [...], "total_pages": n}."""

    def _decode(self, response: requests.Response) -> dict | list:
        if response.content and response.content.lstrip()[:1] == b"[":
            try:
                items = json.loads(response.content, parse_float=Decimal)
            except ValueError as exc:
                raise PlatformResponseInvalid(
                    "WooCommerce answered with a body that is not JSON.", platform=self.platform
                ) from exc
            total_pages = response.headers.get("X-WP-TotalPages", "1")
            return {"items": items, "total_pages": int(total_pages) if total_pages.isdigit() else 1}
        return super()._decode(response)


def _remote(webhook) -> RemoteSubscription:
    if not isinstance(webhook, dict) or webhook.get("id") in (None, ""):
        raise PlatformResponseInvalid("WooCommerce webhook without an id.", platform="WooCommerce")
    return RemoteSubscription(
        platform_id=str(webhook["id"]),
        topic=str(webhook.get("topic") or ""),
        address=str(webhook.get("delivery_url") or ""),
        active=webhook.get("status") == ACTIVE,
    )


class WooCommerceSubscriptions:
    carries_secret = True
    api_version = ""

    def __init__(self, client: WooCommerceClient):
        self.client = client

    @classmethod
    def from_connection(cls, connection) -> WooCommerceSubscriptions:
        return cls(_WebhooksClient.from_connection(connection))

    def topic_matches(self, remote: RemoteSubscription, topic: str) -> bool:
        return remote.topic == topic

    def _request(self, method: str, *segments, **kwargs) -> dict:
        return self.client.request_json(
            method,
            self.client._url("webhooks", *segments),
            auth=self.client._auth,
            headers={"Accept": "application/json"},
            **kwargs,
        )

    def subscriptions_list(self) -> list[RemoteSubscription]:
        found: list[RemoteSubscription] = []
        for page in range(1, MAX_PAGES + 1):
            body = self._request("GET", params={"per_page": PAGE_SIZE, "page": page})
            items = body.get("items")
            if not isinstance(items, list):
                raise PlatformResponseInvalid("WooCommerce webhooks: not a list.", platform="WooCommerce")
            found.extend(_remote(webhook) for webhook in items)
            if not items or body.get("total_pages", 1) <= page:
                break
        return found

    def subscription_create(self, *, topic: str, address: str, secret: str) -> RemoteSubscription:
        return _remote(
            self._request(
                "POST",
                json={
                    "name": WEBHOOK_NAME.format(topic=topic),
                    "topic": topic,
                    "delivery_url": address,
                    "secret": secret,
                    "status": ACTIVE,
                },
            )
        )

    def subscription_update(self, remote: RemoteSubscription, *, address: str, secret: str) -> RemoteSubscription:
        return _remote(
            self._request("PUT", remote.platform_id, json={"delivery_url": address, "secret": secret, "status": ACTIVE})
        )

    def subscription_delete(self, remote: RemoteSubscription) -> None:
        self._request("DELETE", remote.platform_id, params={"force": "true"})

"""Shopify webhook subscriptions through the GraphQL Admin API (issue #24).

`webhookSubscriptions` lists the subscriptions this app holds for the shop (an app sees only its
own), `webhookSubscriptionCreate(topic, webhookSubscription: {callbackUrl, format: JSON})`,
`webhookSubscriptionUpdate(id, webhookSubscription: {callbackUrl})`, `webhookSubscriptionDelete(id)`;
each mutation answers `userErrors` (HTTP 200) when it refused.

Readings (shopify.dev, admin-graphql 2025-01 .. 2025-10), kept here:
- The address is read from `endpoint { ... on WebhookHttpEndpoint { callbackUrl } }` and written as
  `callbackUrl`: both exist in every version from 2024-01 on (deprecated for `uri` in 2025-04+,
  not removed); SHOPIFY_API_VERSION picks the version.
- A subscription's `apiVersion` is "inherited from the app that created the subscription": it cannot
  be set per subscription. A mismatch with SHOPIFY_API_VERSION is reported (last error) for the
  operator to change the app's webhook API version; rewriting the subscription would not change it.
- Deliveries are signed with the app's client secret (StoreConnection.webhook_secret holds it), not a
  per-subscription secret: nothing secret is registered.
- Topics: the REST spelling the adapter reads (`refunds/create`) is the GraphQL enum upper-cased
  with `_` for `/` (REFUNDS_CREATE); Shopify delivers them under the REST spelling in X-Shopify-Topic.
"""

from __future__ import annotations

from platforms.clients.base import PlatformRequestRejected, PlatformResponseInvalid
from platforms.clients.shopify import ShopifyClient
from platforms.subscriptions.base import RemoteSubscription

PAGE_SIZE = 100
MAX_PAGES = 10  # 1,000 subscriptions: far more than one app holds for a shop

_FIELDS = """
  id
  topic
  apiVersion { handle }
  endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } }
"""

LIST_QUERY = (
    """
query WebhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    edges { node {"""
    + _FIELDS
    + """} }
    pageInfo { hasNextPage endCursor }
  }
}
"""
)

CREATE_MUTATION = (
    """
mutation WebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    userErrors { field message }
    webhookSubscription {"""
    + _FIELDS
    + """}
  }
}
"""
)

UPDATE_MUTATION = (
    """
mutation WebhookSubscriptionUpdate($id: ID!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionUpdate(id: $id, webhookSubscription: $webhookSubscription) {
    userErrors { field message }
    webhookSubscription {"""
    + _FIELDS
    + """}
  }
}
"""
)

DELETE_MUTATION = """
mutation WebhookSubscriptionDelete($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    userErrors { field message }
    deletedWebhookSubscriptionId
  }
}
"""


def topic_enum(topic: str) -> str:
    """`refunds/create` -> `REFUNDS_CREATE` (the WebhookSubscriptionTopic value)."""
    return topic.replace("/", "_").upper()


def _remote(node) -> RemoteSubscription:
    if not isinstance(node, dict) or not node.get("id"):
        raise PlatformResponseInvalid("Shopify webhook subscription without an id.", platform="Shopify")
    endpoint = node["endpoint"] if isinstance(node.get("endpoint"), dict) else {}
    api_version = node["apiVersion"] if isinstance(node.get("apiVersion"), dict) else {}
    return RemoteSubscription(
        platform_id=str(node["id"]),
        topic=str(node.get("topic") or ""),
        address=str(endpoint.get("callbackUrl") or ""),
        api_version=str(api_version.get("handle") or ""),
    )


def _refused(payload: dict, operation: str) -> None:
    errors = payload.get("userErrors") or []
    if errors:
        messages = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        raise PlatformRequestRejected(f"Shopify refused {operation}: {messages[:300]}", platform="Shopify")


class ShopifySubscriptions:
    carries_secret = False

    def __init__(self, client: ShopifyClient):
        self.client = client

    @classmethod
    def from_connection(cls, connection) -> ShopifySubscriptions:
        return cls(ShopifyClient.from_connection(connection))

    @property
    def api_version(self) -> str:
        return self.client.api_version

    def topic_matches(self, remote: RemoteSubscription, topic: str) -> bool:
        return remote.topic == topic_enum(topic)

    def subscriptions_list(self) -> list[RemoteSubscription]:
        found: list[RemoteSubscription] = []
        after = None
        for _ in range(MAX_PAGES):
            data = self.client.graphql(LIST_QUERY, {"first": PAGE_SIZE, "after": after})
            page = data.get("webhookSubscriptions") or {}
            found.extend(_remote(edge.get("node")) for edge in page.get("edges") or [] if isinstance(edge, dict))
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                break
            after = info["endCursor"]
        return found

    def subscription_create(self, *, topic: str, address: str, secret: str) -> RemoteSubscription:
        data = self.client.graphql(
            CREATE_MUTATION,
            {"topic": topic_enum(topic), "webhookSubscription": {"callbackUrl": address, "format": "JSON"}},
        )
        payload = data.get("webhookSubscriptionCreate") or {}
        _refused(payload, f"creating the {topic} subscription")
        return _remote(payload.get("webhookSubscription"))

    def subscription_update(self, remote: RemoteSubscription, *, address: str, secret: str) -> RemoteSubscription:
        data = self.client.graphql(
            UPDATE_MUTATION, {"id": remote.platform_id, "webhookSubscription": {"callbackUrl": address}}
        )
        payload = data.get("webhookSubscriptionUpdate") or {}
        _refused(payload, f"updating subscription {remote.platform_id}")
        return _remote(payload.get("webhookSubscription"))

    def subscription_delete(self, remote: RemoteSubscription) -> None:
        data = self.client.graphql(DELETE_MUTATION, {"id": remote.platform_id})
        _refused(data.get("webhookSubscriptionDelete") or {}, f"deleting subscription {remote.platform_id}")

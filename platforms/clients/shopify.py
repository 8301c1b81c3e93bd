"""Shopify Admin GraphQL API (docs/platforms.md 1.7): read an order's cancellation and refunds.

Refund processing trusts the signed `refunds/create` body and does not need this client; operators
and reconciliation tools use it to read Shopify's current view of an order.
Credentials on the store connection: `shop_domain` (example.myshopify.com), `access_token`.
"""

from __future__ import annotations

from urllib.parse import quote

from platforms.clients.base import (
    PlatformHttpClient,
    PlatformRequestRejected,
    SettingText,
    SettingUrl,
    required_credentials,
)

ORDER_REFUNDS_QUERY = """
query OrderRefunds($id: ID!) {
  order(id: $id) {
    id
    name
    cancelledAt
    cancelReason
    displayFinancialStatus
    refunds {
      id
      createdAt
      totalRefundedSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
    }
  }
}
"""


class ShopifyClient(PlatformHttpClient):
    platform = "Shopify"
    # SHOPIFY_API_VERSION ("2025-01" by default): the Admin API version of every call.
    api_version = SettingText("SHOPIFY_API_VERSION")
    # SHOPIFY_ADMIN_API_URL: "https://{shop_domain}/admin/api/{api_version}" by default.
    admin_api_url = SettingUrl("SHOPIFY_ADMIN_API_URL")

    def __init__(self, *, shop_domain: str, access_token: str, session=None):
        super().__init__(session=session)
        self.shop_domain = shop_domain.removeprefix("https://").rstrip("/")
        self._access_token = access_token

    @classmethod
    def from_connection(cls, connection) -> ShopifyClient:
        creds = required_credentials(connection, "Shopify", "shop_domain", "access_token")
        return cls(shop_domain=creds["shop_domain"], access_token=creds["access_token"])

    @property
    def admin_base_url(self) -> str:
        return self.admin_api_url.format(shop_domain=self.shop_domain, api_version=self.api_version)

    @property
    def graphql_url(self) -> str:
        return f"{self.admin_base_url}/graphql.json"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = self.request_json(
            "POST",
            self.graphql_url,
            headers={"X-Shopify-Access-Token": self._access_token, "Content-Type": "application/json"},
            json={"query": query, "variables": variables or {}},
        )
        # GraphQL reports query errors with HTTP 200.
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"] if isinstance(e, dict))
            raise PlatformRequestRejected(f"Shopify GraphQL error: {messages[:300]}", platform=self.platform)
        return body.get("data") or {}

    def get_order(self, order_id: str) -> dict:
        """The REST Order resource with its `refunds[]` (the same shape as the `orders/*` webhook
        bodies, so the adapter reads it with the same code): the parity check."""
        body = self.request_json(
            "GET",
            f"{self.admin_base_url}/orders/{quote(str(order_id), safe='')}.json",
            headers={"X-Shopify-Access-Token": self._access_token, "Accept": "application/json"},
        )
        return body.get("order") or {}

    def _order_url(self, order_id: str, path: str) -> str:
        return f"{self.admin_base_url}/orders/{quote(str(order_id), safe='')}/{path}"

    def _write_headers(self) -> dict[str, str]:
        return {
            "X-Shopify-Access-Token": self._access_token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def refund_calculate(self, order_id: str, refund: dict) -> dict:
        """POST orders/{id}/refunds/calculate.json: what Shopify would refund (its suggested
        transactions name the order's gateway and parent transaction). Writes nothing, so retried."""
        body = self.request_json(
            "POST",
            self._order_url(order_id, "refunds/calculate.json"),
            headers=self._write_headers(),
            json={"refund": refund},
        )
        return body.get("refund") or {}

    def refund_create(self, order_id: str, refund: dict) -> dict:
        """POST orders/{id}/refunds.json. Shopify's REST refund create takes no idempotency key, so
        it is sent once: after a timeout or 5xx the caller searches the order's refunds for our note."""
        body = self.request_json(
            "POST",
            self._order_url(order_id, "refunds.json"),
            headers=self._write_headers(),
            json={"refund": refund},
            max_attempts=1,
        )
        return body.get("refund") or {}

    def list_refunds(self, order_id: str) -> list[dict]:
        """GET orders/{id}/refunds.json: every refund of the order (with its `note`)."""
        body = self.request_json("GET", self._order_url(order_id, "refunds.json"), headers=self._write_headers())
        refunds = body.get("refunds") or []
        return [refund for refund in refunds if isinstance(refund, dict)]

    def get_order_refunds(self, order_id: str) -> dict:
        data = self.graphql(ORDER_REFUNDS_QUERY, {"id": f"gid://shopify/Order/{order_id}"})
        return data.get("order") or {}

"""WooCommerce REST API v3: read an order and one of its refunds (line items, shipping, tax).

The `order.updated` webhook body lists an order's refunds only as `{id, reason, total}`; what each
refund returned (which lines, how much shipping and tax) is read from
`GET {store}/wp-json/wc/v3/orders/{order_id}/refunds/{refund_id}`.
Auth ⚠️ (spec 6.1, not researched further): REST API consumer key and secret sent with HTTP Basic
over HTTPS (WooCommerce > Settings > Advanced > REST API, permission Read).
Credentials on the store connection: `store_url` (https://shop.example.com, the WordPress site
address), `consumer_key` (ck_…), `consumer_secret` (cs_…).
"""

from __future__ import annotations

from urllib.parse import quote

from platforms.clients.base import PlatformHttpClient, required_credentials


class WooCommerceClient(PlatformHttpClient):
    platform = "WooCommerce"
    api_path = "wp-json/wc/v3"

    def __init__(self, *, store_url: str, consumer_key: str, consumer_secret: str, session=None):
        super().__init__(session=session)
        self.store_url = store_url.rstrip("/")
        self._auth = (consumer_key, consumer_secret)

    @classmethod
    def from_connection(cls, connection) -> WooCommerceClient:
        creds = required_credentials(connection, "WooCommerce", "store_url", "consumer_key", "consumer_secret")
        return cls(
            store_url=creds["store_url"], consumer_key=creds["consumer_key"], consumer_secret=creds["consumer_secret"]
        )

    def _url(self, *segments) -> str:
        return "/".join([self.store_url, self.api_path, *(quote(str(segment), safe="") for segment in segments)])

    def get_order(self, order_id: str) -> dict:
        return self.request_json(
            "GET", self._url("orders", order_id), auth=self._auth, headers={"Accept": "application/json"}
        )

    def get_order_refund(self, order_id: str, refund_id: str) -> dict:
        return self.request_json(
            "GET",
            self._url("orders", order_id, "refunds", refund_id),
            auth=self._auth,
            headers={"Accept": "application/json"},
        )

    def refund_create(self, order_id: str, refund: dict) -> dict:
        """POST orders/{id}/refunds. WooCommerce has no idempotency key: sent once, and after a
        timeout or 5xx the caller searches the order's refunds for our marker."""
        return self.request_json(
            "POST",
            self._url("orders", order_id, "refunds"),
            auth=self._auth,
            headers={"Accept": "application/json"},
            json=refund,
            max_attempts=1,
        )

    def list_refunds(self, order_id: str) -> list[dict]:
        """GET orders/{id}/refunds: the order's refunds (a JSON array, with each `reason`)."""
        refunds = self.request_json_list(
            "GET",
            self._url("orders", order_id, "refunds"),
            auth=self._auth,
            headers={"Accept": "application/json"},
            params={"per_page": 100},
        )
        return [refund for refund in refunds if isinstance(refund, dict)]

    def order_update(self, order_id: str, changes: dict) -> dict:
        """PUT orders/{id}: a status change is idempotent, so retried."""
        return self.request_json(
            "PUT",
            self._url("orders", order_id),
            auth=self._auth,
            headers={"Accept": "application/json"},
            json=changes,
        )

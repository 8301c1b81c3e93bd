"""BigCommerce REST API: read an order (V2) and its refunds (V3 payment actions).

Spec/platforms.md 5.6: header `X-Auth-Token: <access token>`, base URL
https://api.bigcommerce.com/stores/{store_hash}/ (the part before `{store_hash}` is the
BIGCOMMERCE_API_BASE_URL setting); orders are read from `/v2/orders/{id}`, refunds
from `/v3/orders/{id}/payment_actions/refunds` (spec 5.2).
Credentials on the store connection: `store_hash` (the id in `stores/{store_hash}`), `access_token`
(a store API-account token with Orders read-only scope, or the app's OAuth token).
"""

from __future__ import annotations

from urllib.parse import quote

from platforms.clients.base import PlatformHttpClient, PlatformResponseInvalid, SettingUrl, required_credentials

# Refunds of one order fit one page; the bound only stops a misbehaving paginator.
REFUNDS_PAGE_SIZE = 250
REFUNDS_MAX_PAGES = 20


class BigCommerceClient(PlatformHttpClient):
    platform = "BigCommerce"
    base_url = SettingUrl("BIGCOMMERCE_API_BASE_URL")

    def __init__(self, *, store_hash: str, access_token: str, session=None):
        super().__init__(session=session)
        self.store_hash = str(store_hash)
        self._access_token = access_token

    @classmethod
    def from_connection(cls, connection) -> BigCommerceClient:
        creds = required_credentials(connection, "BigCommerce", "store_hash", "access_token")
        return cls(store_hash=creds["store_hash"], access_token=creds["access_token"])

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{quote(self.store_hash, safe='')}/{path}"

    def _headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self._access_token, "Accept": "application/json"}

    def get_order(self, order_id: str) -> dict:
        """The V2 order: `status_id`, `currency_code`, totals, `date_created`."""
        return self.request_json(
            "GET", self._url(f"v2/orders/{quote(str(order_id), safe='')}"), headers=self._headers()
        )

    def _write_headers(self) -> dict[str, str]:
        return {**self._headers(), "Content-Type": "application/json"}

    def order_status_set(self, order_id: str, status_id: int) -> dict:
        """PUT /v2/orders/{id} {"status_id": ...}: idempotent, so retried."""
        return self.request_json(
            "PUT",
            self._url(f"v2/orders/{quote(str(order_id), safe='')}"),
            headers=self._write_headers(),
            json={"status_id": status_id},
        )

    def refund_quote(self, order_id: str, items: list[dict]) -> dict:
        """POST /v3/orders/{id}/payment_actions/refund_quotes (spec 5.6): what BigCommerce would
        refund and with which payment methods. Writes nothing, so retried."""
        body = self.request_json(
            "POST",
            self._url(f"v3/orders/{quote(str(order_id), safe='')}/payment_actions/refund_quotes"),
            headers=self._write_headers(),
            json={"items": items},
        )
        return body.get("data") if isinstance(body.get("data"), dict) else {}

    def refund_create(self, order_id: str, refund: dict) -> dict:
        """POST /v3/orders/{id}/payment_actions/refunds. No idempotency key exists: sent once, and
        after a timeout or 5xx the caller searches the order's refunds for our marker."""
        body = self.request_json(
            "POST",
            self._url(f"v3/orders/{quote(str(order_id), safe='')}/payment_actions/refunds"),
            headers=self._write_headers(),
            json=refund,
            max_attempts=1,
        )
        return body.get("data") if isinstance(body.get("data"), dict) else {}

    def get_order_refunds(self, order_id: str) -> list[dict]:
        """Every refund of the order (spec 5.2 refund shape), oldest first as BigCommerce lists them."""
        url = self._url(f"v3/orders/{quote(str(order_id), safe='')}/payment_actions/refunds")
        refunds: list[dict] = []
        for page in range(1, REFUNDS_MAX_PAGES + 1):
            body = self.request_json(
                "GET", url, headers=self._headers(), params={"page": page, "limit": REFUNDS_PAGE_SIZE}
            )
            data = body.get("data", [])
            if not isinstance(data, list) or not all(isinstance(refund, dict) for refund in data):
                raise PlatformResponseInvalid(
                    "BigCommerce refunds response: `data` is not a list of refunds.", platform=self.platform
                )
            refunds.extend(data)
            if not data or _total_pages(body) <= page:
                break
        return refunds


def _total_pages(body: dict) -> int:
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    pagination = meta.get("pagination") if isinstance(meta.get("pagination"), dict) else {}
    total_pages = pagination.get("total_pages")
    return total_pages if isinstance(total_pages, int) and not isinstance(total_pages, bool) else 1

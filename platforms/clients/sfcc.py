"""Salesforce B2C Commerce API (SCAPI) Orders, for polling cancellations (SFCC Option 1, seed 000).

Spec/platforms.md 4.3-4.4: a client-credentials token from Account Manager, then the admin Orders
search (hosts: the SFCC_API_URL and SFCC_TOKEN_URL settings). Credentials on the store connection:
`short_code`, `organization_id` (f_ecom_<tenant>), `site_id`, `client_id`, `client_secret`.

⚠️ Query-parameter names `lastModifiedDateFrom`/`lastModifiedDateTo`, page size 200 and the
offset + limit <= 10,000 window come from one third-party note (spec 4.3 and open item 4); the
response is read as SCAPI's usual `{limit, offset, total, data: [...]}` envelope.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

from platforms.clients.base import PlatformHttpClient, PlatformResponseInvalid, SettingUrl, required_credentials

SEARCH_PAGE_SIZE = 200
SEARCH_WINDOW_LIMIT = 10_000


def scapi_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class SfccClient(PlatformHttpClient):
    platform = "SFCC"
    token_url = SettingUrl("SFCC_TOKEN_URL")
    # SFCC_API_URL: "https://{short_code}.api.commercecloud.salesforce.com" by default.
    api_url = SettingUrl("SFCC_API_URL")

    def __init__(
        self,
        *,
        short_code: str,
        organization_id: str,
        site_id: str,
        client_id: str,
        client_secret: str,
        session=None,
    ):
        super().__init__(session=session)
        self.short_code = short_code
        self.organization_id = organization_id
        self.site_id = site_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self._token_expires_at = 0.0

    @classmethod
    def from_connection(cls, connection) -> SfccClient:
        creds = required_credentials(
            connection, "SFCC", "short_code", "organization_id", "site_id", "client_id", "client_secret"
        )
        return cls(**creds)

    @property
    def tenant_id(self) -> str:
        # organizationId f_ecom_zysr_001 -> tenant zysr_001 (spec 4.3/4.4).
        return self.organization_id.removeprefix("f_ecom_")

    @property
    def orders_url(self) -> str:
        return (
            f"{self.api_url.format(short_code=self.short_code)}/checkout/orders/v1/"
            f"organizations/{quote(self.organization_id, safe='')}/orders"
        )

    def access_token(self) -> str:
        if self._token and time.monotonic() < self._token_expires_at:
            return self._token
        body = self.request_json(
            "POST",
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": f"SALESFORCE_COMMERCE_API:{self.tenant_id} sfcc.orders",
            },
            auth=(self._client_id, self._client_secret),
        )
        token = body.get("access_token")
        if not token:
            raise PlatformResponseInvalid("SFCC token response has no access_token.", platform=self.platform)
        # Renew a minute early so a long poll never sends an expired token.
        self._token = str(token)
        self._token_expires_at = time.monotonic() + max(int(body.get("expires_in") or 0) - 60, 0)
        return self._token

    def search_orders(self, *, modified_from: datetime, modified_to: datetime, offset: int = 0) -> dict:
        return self.request_json(
            "GET",
            self.orders_url,
            headers={"Authorization": f"Bearer {self.access_token()}", "Accept": "application/json"},
            params={
                "siteId": self.site_id,
                "lastModifiedDateFrom": scapi_datetime(modified_from),
                "lastModifiedDateTo": scapi_datetime(modified_to),
                "offset": offset,
                "limit": SEARCH_PAGE_SIZE,
            },
        )

    def iter_orders_modified(self, *, modified_from: datetime, modified_to: datetime) -> Iterator[dict]:
        """Every order modified in [modified_from, modified_to], page by page. Stops at the API's
        10,000-row window; callers keep windows short so that never truncates in practice."""
        offset = 0
        while offset + SEARCH_PAGE_SIZE <= SEARCH_WINDOW_LIMIT:
            page = self.search_orders(modified_from=modified_from, modified_to=modified_to, offset=offset)
            orders = page.get("data")
            if orders is None:
                orders = page.get("hits") or []
            if not isinstance(orders, list):
                raise PlatformResponseInvalid("SFCC order search: `data` is not a list.", platform=self.platform)
            yield from (order for order in orders if isinstance(order, dict))
            offset += len(orders)
            total = page.get("total")
            if not orders or (isinstance(total, int) and offset >= total):
                return

    def get_order(self, order_no: str) -> dict:
        """One order by its number (the parity check): `GET .../orders/{orderNo}?siteId=...`."""
        return self.request_json(
            "GET",
            f"{self.orders_url}/{quote(str(order_no), safe='')}",
            headers={"Authorization": f"Bearer {self.access_token()}", "Accept": "application/json"},
            params={"siteId": self.site_id},
        )

"""Ecwid REST API v3: read one order (the webhook body is unsigned, so the order is read from here).

Spec/platforms.md 2.7: `Authorization: Bearer <token>`, base URL https://app.ecwid.com/api/v3/{storeId}/
(the part before `{storeId}` is the ECWID_API_BASE_URL setting).
Credentials on the store connection: `store_id`, `access_token` (a `secret_…` token or an OAuth token).
"""

from __future__ import annotations

from urllib.parse import quote

from platforms.clients.base import PlatformHttpClient, SettingUrl, required_credentials


class EcwidClient(PlatformHttpClient):
    platform = "Ecwid"
    base_url = SettingUrl("ECWID_API_BASE_URL")

    def __init__(self, *, store_id: str, access_token: str, session=None):
        super().__init__(session=session)
        self.store_id = str(store_id)
        self._access_token = access_token

    @classmethod
    def from_connection(cls, connection) -> EcwidClient:
        creds = required_credentials(connection, "Ecwid", "store_id", "access_token")
        return cls(store_id=creds["store_id"], access_token=creds["access_token"])

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token}", "Accept": "application/json"}

    def get_order(self, order_id: str) -> dict:
        url = f"{self.base_url}/{quote(self.store_id, safe='')}/orders/{quote(str(order_id), safe='')}"
        return self.request_json("GET", url, headers=self._headers())

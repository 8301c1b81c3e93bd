"""BigCommerce webhooks through `/v3/hooks` (issue #24).

GET `/v3/hooks` (paginated, `meta.pagination.total_pages`) lists the hooks of the app whose token
the connection holds; POST `/v3/hooks` `{scope, destination, is_active, headers}` creates one, PUT
`/v3/hooks/{id}` corrects it, DELETE `/v3/hooks/{id}` removes it; each answers `{"data": hook}`.
A hook carries `headers: {"Authorization": "Bearer <webhook secret>"}`, which BigCommerce sends
back with every delivery and the adapter compares (platforms/adapters/bigcommerce.py). BigCommerce
deactivates a hook (`is_active: false`) whose destination keeps failing and after 90 days without
deliveries; the sync turns it back on.
"""

from __future__ import annotations

from urllib.parse import quote

from platforms.adapters.bigcommerce import SECRET_HEADER
from platforms.clients.base import PlatformResponseInvalid
from platforms.clients.bigcommerce import BigCommerceClient
from platforms.subscriptions.base import RemoteSubscription

PAGE_SIZE = 250
MAX_PAGES = 20


def _remote(hook) -> RemoteSubscription:
    if not isinstance(hook, dict) or hook.get("id") in (None, ""):
        raise PlatformResponseInvalid("BigCommerce hook without an id.", platform="BigCommerce")
    return RemoteSubscription(
        platform_id=str(hook["id"]),
        topic=str(hook.get("scope") or ""),
        address=str(hook.get("destination") or ""),
        active=hook.get("is_active") is True,
    )


class BigCommerceSubscriptions:
    carries_secret = True
    api_version = ""

    def __init__(self, client: BigCommerceClient):
        self.client = client

    @classmethod
    def from_connection(cls, connection) -> BigCommerceSubscriptions:
        return cls(BigCommerceClient.from_connection(connection))

    def topic_matches(self, remote: RemoteSubscription, topic: str) -> bool:
        return remote.topic == topic

    def _hooks_url(self, hook_id: str = "") -> str:
        path = "v3/hooks" + (f"/{quote(hook_id, safe='')}" if hook_id else "")
        return self.client._url(path)

    def _headers(self) -> dict[str, str]:
        return self.client._headers()

    @staticmethod
    def _secret_headers(secret: str) -> dict[str, str]:
        return {SECRET_HEADER: f"Bearer {secret}"}

    def subscriptions_list(self) -> list[RemoteSubscription]:
        found: list[RemoteSubscription] = []
        for page in range(1, MAX_PAGES + 1):
            body = self.client.request_json(
                "GET", self._hooks_url(), headers=self._headers(), params={"page": page, "limit": PAGE_SIZE}
            )
            data = body.get("data", [])
            if not isinstance(data, list):
                raise PlatformResponseInvalid("BigCommerce hooks: `data` is not a list.", platform="BigCommerce")
            found.extend(_remote(hook) for hook in data)
            pagination = (body.get("meta") or {}).get("pagination") or {}
            if not data or not isinstance(pagination.get("total_pages"), int) or pagination["total_pages"] <= page:
                break
        return found

    def subscription_create(self, *, topic: str, address: str, secret: str) -> RemoteSubscription:
        body = self.client.request_json(
            "POST",
            self._hooks_url(),
            headers=self._headers(),
            json={"scope": topic, "destination": address, "is_active": True, "headers": self._secret_headers(secret)},
        )
        return _remote(body.get("data"))

    def subscription_update(self, remote: RemoteSubscription, *, address: str, secret: str) -> RemoteSubscription:
        body = self.client.request_json(
            "PUT",
            self._hooks_url(remote.platform_id),
            headers=self._headers(),
            json={"destination": address, "is_active": True, "headers": self._secret_headers(secret)},
        )
        return _remote(body.get("data"))

    def subscription_delete(self, remote: RemoteSubscription) -> None:
        self.client.request_json("DELETE", self._hooks_url(remote.platform_id), headers=self._headers())

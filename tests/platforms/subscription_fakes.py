"""Stateful recorded platforms for the subscription tests (issue #24): each answers its webhook
subscription API in the documented request/response shapes and keeps the calls it received.

- Shopify: GraphQL Admin API (`webhookSubscriptions` connection, `webhookSubscriptionCreate/Update/
  Delete` payloads with `userErrors`), shopify.dev admin-graphql 2025-01.
- BigCommerce: `/v3/hooks` (`{"data": hook}` / `{"data": [hooks], "meta": {"pagination": ...}}`).
- WooCommerce: `/wp-json/wc/v3/webhooks` (a JSON array with X-WP-Total / X-WP-TotalPages; objects).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

import responses

SHOP_DOMAIN = "blue-mug.myshopify.com"
SHOPIFY_GRAPHQL = f"https://{SHOP_DOMAIN}/admin/api/2025-01/graphql.json"
BC_STORE_HASH = "x7kq2m9d4f"
BC_HOOKS = f"https://api.bigcommerce.com/stores/{BC_STORE_HASH}/v3/hooks"
WOO_STORE = "https://shop.example.com"
WOO_WEBHOOKS = f"{WOO_STORE}/wp-json/wc/v3/webhooks"

SHOPIFY_UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
WOO_UNAUTHORIZED = {
    "code": "woocommerce_rest_cannot_view",
    "message": "Sorry, you cannot list resources.",
    "data": {"status": 401},
}


@dataclass
class Recorded:
    method: str
    operation: str
    body: dict | None


@dataclass
class FakePlatform:
    items: dict[str, dict] = field(default_factory=dict)
    calls: list[Recorded] = field(default_factory=list)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    fail_status: int | None = None

    @property
    def writes(self) -> list[Recorded]:
        return [call for call in self.calls if call.operation != "list"]


class FakeShopify(FakePlatform):
    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(responses.POST, SHOPIFY_GRAPHQL, callback=self._answer, content_type="application/json")

    def add(self, topic: str, callback_url: str, api_version: str = "2025-01") -> str:
        gid = f"gid://shopify/WebhookSubscription/{next(self.ids)}"
        self.items[gid] = {
            "id": gid,
            "topic": topic,
            "apiVersion": {"handle": api_version},
            "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": callback_url},
        }
        return gid

    def _answer(self, request):
        body = json.loads(request.body)
        query, variables = body["query"], body.get("variables") or {}
        if self.fail_status:
            return self.fail_status, {}, json.dumps(SHOPIFY_UNAUTHORIZED)
        if "webhookSubscriptionCreate(" in query:
            self.calls.append(Recorded("POST", "create", variables))
            gid = self.add(variables["topic"], variables["webhookSubscription"]["callbackUrl"])
            data = {"webhookSubscriptionCreate": {"userErrors": [], "webhookSubscription": self.items[gid]}}
        elif "webhookSubscriptionUpdate(" in query:
            self.calls.append(Recorded("POST", "update", variables))
            item = self.items[variables["id"]]
            item["endpoint"]["callbackUrl"] = variables["webhookSubscription"]["callbackUrl"]
            data = {"webhookSubscriptionUpdate": {"userErrors": [], "webhookSubscription": item}}
        elif "webhookSubscriptionDelete(" in query:
            self.calls.append(Recorded("POST", "delete", variables))
            self.items.pop(variables["id"])
            data = {"webhookSubscriptionDelete": {"userErrors": [], "deletedWebhookSubscriptionId": variables["id"]}}
        else:
            self.calls.append(Recorded("POST", "list", variables))
            data = {
                "webhookSubscriptions": {
                    "edges": [{"node": item} for item in self.items.values()],
                    "pageInfo": {"hasNextPage": False, "endCursor": None},
                }
            }
        return 200, {}, json.dumps({"data": data, "extensions": {"cost": {"requestedQueryCost": 12}}})


class FakeBigCommerce(FakePlatform):
    def install(self, mock: responses.RequestsMock) -> None:
        pattern = re.compile(rf"^{re.escape(BC_HOOKS)}(/\d+)?(\?.*)?$")
        for method in (responses.GET, responses.POST, responses.PUT, responses.DELETE):
            mock.add_callback(method, pattern, callback=self._answer, content_type="application/json")

    def add(self, scope: str, destination: str, *, is_active: bool = True, headers: dict | None = None) -> str:
        hook_id = str(next(self.ids))
        self.items[hook_id] = {
            "id": int(hook_id),
            "client_id": "m9r6keqmo7h7f23btnpwernbez1kglkl",
            "store_hash": BC_STORE_HASH,
            "scope": scope,
            "destination": destination,
            "headers": headers,
            "is_active": is_active,
            "created_at": 1561488106,
            "updated_at": 1561488106,
        }
        return hook_id

    def _answer(self, request):
        if self.fail_status:
            return self.fail_status, {}, json.dumps({"status": self.fail_status, "title": "Unauthorized"})
        hook_id = request.path_url.split("?")[0].rsplit("/", 1)[-1]
        body = json.loads(request.body) if request.body else None
        if request.method == "GET":
            self.calls.append(Recorded("GET", "list", None))
            hooks = list(self.items.values())
            meta = {
                "pagination": {
                    "count": len(hooks),
                    "current_page": 1,
                    "per_page": 250,
                    "total": len(hooks),
                    "total_pages": 1,
                }
            }
            return 200, {}, json.dumps({"data": hooks, "meta": meta})
        if request.method == "POST":
            self.calls.append(Recorded("POST", "create", body))
            new_id = self.add(body["scope"], body["destination"], is_active=body["is_active"], headers=body["headers"])
            return 200, {}, json.dumps({"data": self.items[new_id], "meta": {}})
        if request.method == "PUT":
            self.calls.append(Recorded("PUT", "update", {"id": hook_id, **body}))
            self.items[hook_id].update(body)
            return 200, {}, json.dumps({"data": self.items[hook_id], "meta": {}})
        self.calls.append(Recorded("DELETE", "delete", {"id": hook_id}))
        return 200, {}, json.dumps({"data": self.items.pop(hook_id), "meta": {}})


class FakeWooCommerce(FakePlatform):
    def install(self, mock: responses.RequestsMock) -> None:
        pattern = re.compile(rf"^{re.escape(WOO_WEBHOOKS)}(/\d+)?(\?.*)?$")
        for method in (responses.GET, responses.POST, responses.PUT, responses.DELETE):
            mock.add_callback(method, pattern, callback=self._answer, content_type="application/json")

    def add(self, topic: str, delivery_url: str, *, status: str = "active", name: str = "") -> str:
        webhook_id = str(next(self.ids))
        resource, event = topic.split(".")
        self.items[webhook_id] = {
            "id": int(webhook_id),
            "name": name or f"Webhook {webhook_id}",
            "status": status,
            "topic": topic,
            "resource": resource,
            "event": event,
            "hooks": [f"woocommerce_update_{resource}"],
            "delivery_url": delivery_url,
            "date_created": "2026-11-30T10:00:00",
            "date_created_gmt": "2026-11-30T10:00:00",
            "date_modified": None,
            "date_modified_gmt": None,
            "_links": {"self": [{"href": f"{WOO_WEBHOOKS}/{webhook_id}"}]},
        }
        return webhook_id

    def _answer(self, request):
        if self.fail_status:
            return self.fail_status, {}, json.dumps(WOO_UNAUTHORIZED)
        webhook_id = request.path_url.split("?")[0].rsplit("/", 1)[-1]
        body = json.loads(request.body) if request.body else None
        if request.method == "GET":
            self.calls.append(Recorded("GET", "list", None))
            items = list(self.items.values())
            return 200, {"X-WP-Total": str(len(items)), "X-WP-TotalPages": "1"}, json.dumps(items)
        if request.method == "POST":
            self.calls.append(Recorded("POST", "create", body))
            new_id = self.add(body["topic"], body["delivery_url"], status=body["status"], name=body["name"])
            return 201, {}, json.dumps(self.items[new_id])
        if request.method == "PUT":
            self.calls.append(Recorded("PUT", "update", {"id": webhook_id, **body}))
            self.items[webhook_id].update({k: v for k, v in body.items() if k != "secret"})
            return 200, {}, json.dumps(self.items[webhook_id])
        self.calls.append(Recorded("DELETE", "delete", {"id": webhook_id}))
        return 200, {}, json.dumps(self.items.pop(webhook_id))

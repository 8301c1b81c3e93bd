"""The loopback HTTP server of the soak: the channel's webhook endpoint, and the Shopify store's Admin
API for refunds.

- `POST /violet-webhooks`: answers 200 and remembers the event ids it received (X-Violet-Event-Id),
  and whether their signature verified.
- `/shopify/<shop>/admin/api/<version>/orders/<id>/refunds/calculate.json` (POST),
  `.../refunds.json` (POST create, GET list): a Shopify that accepts every refund the network
  forwards (issue 14: a channel refund is recorded on the merchant's platform before its money
  moves). The soak's Shopify merchant points SHOPIFY_ADMIN_API_URL here, so its channel refunds are
  forwarded for real, through the same client and look-ups as production; no echo webhook is sent.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SHOPIFY_REFUNDS = re.compile(
    r"^/shopify/[^/]+/admin/api/[^/]+/orders/(?P<order>[^/]+)/refunds(?P<calc>/calculate)?\.json$"
)
# Refund ids the fake Shopify hands out: far from the soak's own webhook refund ids.
FIRST_SHOPIFY_REFUND_ID = 990_000_000


class Receiver:
    def __init__(self):
        self.received: Counter = Counter()
        self.bad_signatures = 0
        self.secret = ""  # set once the endpoint exists
        self.lock = threading.Lock()
        # Shopify: refunds created per order id (each as Shopify lists it), in order.
        self.shopify_refunds: dict[str, list[dict]] = defaultdict(list)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                shopify = _SHOPIFY_REFUNDS.match(self.path.split("?")[0])
                if shopify:
                    status, answer = receiver.shopify_post(shopify["order"], bool(shopify["calc"]), body)
                    self._json(status, answer)
                    return
                event_id = self.headers.get("X-Violet-Event-Id", "")
                receiver.record(event_id, body, self.headers.get("X-Violet-Hmac", ""))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self):
                shopify = _SHOPIFY_REFUNDS.match(self.path.split("?")[0])
                if shopify and not shopify["calc"]:
                    with receiver.lock:
                        refunds = list(receiver.shopify_refunds.get(shopify["order"], []))
                    self._json(200, {"refunds": refunds})
                    return
                self._json(404, {"errors": "Not Found"})

            def _json(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/violet-webhooks"

    @property
    def shopify_admin_api_url(self) -> str:
        """The SHOPIFY_ADMIN_API_URL pattern that points the Shopify client here."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/shopify/{{shop_domain}}/admin/api/{{api_version}}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def record(self, event_id: str, body: bytes, signature: str) -> None:
        verified = True
        if self.secret:
            from notifications.signing import signature_matches

            try:
                verified = signature_matches(body, self.secret, signature)
            except Exception:
                verified = False
        with self.lock:
            self.received[event_id] += 1
            if not verified:
                self.bad_signatures += 1

    def shopify_post(self, order_id: str, calculate: bool, body: bytes) -> tuple[int, dict]:
        """Shopify's answers (REST Refund resource shapes): calculate suggests one refund transaction
        against the order's gateway; create records the refund and answers 201 with its id."""
        try:
            refund = json.loads(body or b"{}").get("refund") or {}
        except ValueError:
            return 400, {"errors": "body is not JSON"}
        if calculate:
            return 200, {
                "refund": {
                    "refund_line_items": refund.get("refund_line_items") or [],
                    "transactions": [
                        {
                            "order_id": order_id,
                            "kind": "suggested_refund",
                            "gateway": "violet",
                            "parent_id": 1,
                            "amount": "0.00",
                            "currency": "USD",
                            "maximum_refundable": "118.00",
                        }
                    ],
                }
            }
        with self.lock:
            created = {
                "id": FIRST_SHOPIFY_REFUND_ID + sum(len(r) for r in self.shopify_refunds.values()),
                "order_id": order_id,
                "note": refund.get("note") or "",
                "refund_line_items": refund.get("refund_line_items") or [],
                "transactions": [{**t, "status": "success"} for t in refund.get("transactions") or []],
            }
            self.shopify_refunds[order_id].append(created)
        return 201, {"refund": created}

    def shopify_refund_count(self) -> int:
        with self.lock:
            return sum(len(refunds) for refunds in self.shopify_refunds.values())

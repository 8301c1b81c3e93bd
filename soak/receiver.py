"""The channel's webhook endpoint: a tiny HTTP server on loopback that answers 200 and remembers the
event ids it received (X-Violet-Event-Id), and whether their signature verified."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self):
        self.received: Counter = Counter()
        self.bad_signatures = 0
        self.secret = ""  # set once the endpoint exists
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                event_id = self.headers.get("X-Violet-Event-Id", "")
                receiver.record(event_id, body, self.headers.get("X-Violet-Hmac", ""))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/violet-webhooks"

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

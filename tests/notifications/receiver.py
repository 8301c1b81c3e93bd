"""A real HTTP endpoint for webhook tests: `http.server` on 127.0.0.1:<free port> in a thread.

It records every request (path, headers, raw body bytes) before answering, and answers from a
script: `fail(times, status)` answers `status` that many times, `stall(times, seconds)` sleeps that
long before answering (past the sender's timeout), anything else gets 200.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class WebhookReceiver:
    def __init__(self):
        self.requests: list[ReceivedRequest] = []
        self._script: deque[tuple[str, float]] = deque()
        self.always_status: int | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                action, value = receiver._record(
                    ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if action == "stall":
                    time.sleep(value)
                    status = 200
                else:
                    status = int(value)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"receiver says no")
                except OSError:
                    pass  # the sender gave up (timeout) and closed the connection

            def log_message(self, format, *args):  # quiet test output
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/violet"

    def _record(self, request: ReceivedRequest) -> tuple[str, float]:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
            return ("status", self.always_status or 200)

    def fail(self, times: int, status: int = 500) -> None:
        with self._lock:
            self._script.extend([("status", status)] * times)

    def stall(self, times: int, seconds: float) -> None:
        with self._lock:
            self._script.extend([("stall", seconds)] * times)

    def topics(self) -> list[str]:
        return [r.header("X-Violet-Topic") for r in self.requests]

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

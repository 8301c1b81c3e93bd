"""The Stripe sandbox in its own process: an HTTP server the stripe SDK talks to like api.stripe.com.

    python -m stripe_sandbox.http_server --port 12111 [--host 127.0.0.1] [--latency-ms 100] [--pool-size 8]

The product points its SDK here with STRIPE_SANDBOX_URL (payments.gateway, settings): the same
sandbox (transport.handle: routing, faults, idempotency, ledger), the same tables in the same
database, but its CPU is this process's and its PostgreSQL sessions are named
`violet-stripe-sandbox` (application_name), so a benchmark can count them apart from the product's
(bench/pipeline.py). The in-process transport stays the default for tests and development.

Why a thread per connection (http.server) and a small connection pool: every SDK thread keeps one
keep-alive connection and most of a call is the simulated latency (a sleep outside any transaction),
so 128 callers need 128 threads but only a few PostgreSQL connections at a time. A response the
sandbox decides to lose (a fault) closes the connection without an answer, which the SDK reports as
the APIConnectionError a lost response is.

Webhooks: the events the sandbox emits go to STRIPE_SANDBOX_WEBHOOK_URL when set (an HTTP POST,
e.g. the product's /webhooks/stripe/<endpoint>/); the in-process receiver is not used here, so the
product's ingest work never runs in (and is never charged to) the sandbox's process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

APPLICATION_NAME = "violet-stripe-sandbox"
LISTEN_BACKLOG = 512  # every SDK thread of every worker may connect at once


def configure_database(pool_size: int) -> None:
    """Before Django opens a connection: a bounded pool (threads come and go with connections) and
    the application_name that tells the sandbox's PostgreSQL sessions from the product's."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return
    database["CONN_MAX_AGE"] = 0  # Django's pool requires it; closing returns the connection to the pool
    options = database.setdefault("OPTIONS", {})
    options["application_name"] = APPLICATION_NAME
    options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 30}


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    server_version = "stripe-sandbox"
    sys_version = ""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def do_DELETE(self):
        self._answer()

    def _answer(self) -> None:
        import stripe
        from django.db import connections

        from stripe_sandbox import transport

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        headers = dict(self.headers.items())
        try:
            payload, status, response_headers = transport.handle(self.command, self.path, headers, body)
        except stripe.APIConnectionError:
            # The sandbox lost this response on purpose (a fault) or lost its database: no answer at all.
            self.close_connection = True
            return
        finally:
            connections.close_all()  # back to the pool: the next call on this connection may be far off
        self.send_response(status)
        for name, value in response_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        logger.debug("%s " + format, self.address_string(), *args)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG


def make_server(host: str, port: int) -> SandboxServer:
    return SandboxServer((host, port), SandboxRequestHandler)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--latency-ms", type=int, default=None, help="Sleep per call (STRIPE_SANDBOX_LATENCY_MS).")
    parser.add_argument("--pool-size", type=int, default=8, help="PostgreSQL connections at most (8).")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "violet_refunds.settings")
    # Not the product's in-process receiver: events go over HTTP (STRIPE_SANDBOX_WEBHOOK_URL) or nowhere.
    os.environ["STRIPE_SANDBOX_WEBHOOK_RECEIVER"] = ""
    import django
    from django.conf import settings

    configure_database(args.pool_size)
    django.setup()
    if args.latency_ms is not None:
        settings.STRIPE_SANDBOX_LATENCY_MS = args.latency_ms
    server = make_server(args.host, args.port)
    print(f"stripe sandbox listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make prod-smoke`: the production shape on loopback, end to end, once.

Starts what the Procfile runs (gunicorn with gunicorn.conf.py, one Celery worker per queue, one beat)
with DEBUG=false on a throw-away PostgreSQL database and its own redis-server, the Stripe sandbox
explicitly allowed. Waits for /readyz; serves a static file (whitenoise); sends one signed Shopify
refunds/create webhook and waits, through the channel API, for the refund to be COMPLETED; checks the
channel's webhook receiver got REFUND_COMPLETED, the request id reached the refunds worker's JSON log,
and /metrics shows the refund, the inbound event and the Stripe calls. Stops everything it started,
whatever happens. Exit 0 when every check passed.

    python scripts/prod_smoke.py [--postgres-url postgres://postgres@127.0.0.1:5432/postgres] [--keep-logs]

Reuses the soak's machinery (soak/processes.py, soak/world.py, soak/intents.py, soak/receiver.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from soak import processes  # noqa: E402
from soak.processes import Database, Service, free_port, wait_until  # noqa: E402
from violet_refunds import queues  # noqa: E402

DB_PREFIX = "violet_prodsmoke_"
SHOPIFY_REFUND_ID = 910_000_001
SETTLE_SECONDS = 120

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[prod-smoke {time.monotonic() - _started:6.1f}s] {message}", flush=True)


class SmokeFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailed(what)
    log(f"ok: {what}")


def environment(database_url: str, redis_url: str, work_dir: Path, metrics_token: str) -> dict:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIOLET_CRASH_", "PYTEST_", "DJANGO_"))}
    for name in ("STRIPE_API_KEY", "SENTRY_DSN", "LOG_FORMAT"):
        env.pop(name, None)
    multiproc = work_dir / "prometheus"
    multiproc.mkdir()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "STRIPE_SANDBOX_ALLOWED": "true",  # DEBUG off on the sandbox: allowed explicitly
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, no TLS proxy in front
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "METRICS_TOKEN": metrics_token,
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "STATIC_ROOT": str(work_dir / "static"),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(PROJECT_DIR),
            # The channel's webhook receiver runs on loopback: allowed explicitly, as production never is.
            "OUTBOUND_ALLOWED_PRIVATE_NETWORKS": "127.0.0.1/32",
            # Beat's relay sooner than in production, so the channel's event arrives within the smoke.
            "WEBHOOK_RELAY_INTERVAL_SECONDS": "5",
        }
    )
    return env


def web_service(env: dict, port: int, log_dir: Path) -> Service:
    web_env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"}
    return Service(
        name="web",
        command=[str(Path(sys.executable).parent / "gunicorn"), "violet_refunds.wsgi", "-c", "gunicorn.conf.py"],
        env=web_env,
        log_path=log_dir / "web.log",
        ready_text="Booting worker",
    )


def role_worker_service(env: dict, queue: str, log_dir: Path) -> Service:
    return Service(
        name=f"worker-{queue}",
        command=[sys.executable, "-m", "celery", *queues.worker_arguments(queue), "--concurrency", "1", "-l", "INFO"],
        env=env,
        log_path=log_dir / f"worker-{queue}.log",
        ready_text=" ready.",
    )


class Smoke:
    def __init__(self, args):
        self.args = args
        self.work_dir = Path(tempfile.mkdtemp(prefix="violet-prod-smoke-"))
        self.log_dir = self.work_dir / "logs"
        self.log_dir.mkdir()
        self.database = Database(args.postgres_url, f"{DB_PREFIX}{os.getpid()}")
        self.redis_port = free_port()
        self.redis = processes.redis_service(self.redis_port, self.log_dir)
        self.services: list[Service] = []
        self.receiver = None
        self.metrics_token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        for name in Database.drop_leftovers(self.args.postgres_url, DB_PREFIX):
            log(f"dropped {name}, left by a killed run")
        self.database.create()
        self.redis.start()
        redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = environment(self.database.url, redis_url, self.work_dir, self.metrics_token)
        os.environ.update(self.env)
        log(f"database {self.database.name}, redis {redis_url}, logs in {self.log_dir}")
        for command in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run(  # noqa: S603 - fixed manage.py commands
                [sys.executable, "manage.py", *command], cwd=PROJECT_DIR, env=self.env, check=True
            )
        world = self.seed()
        self.start()
        self.check_ready()
        self.check_static()
        self.drive(world)
        self.check_metrics()
        log("PROD SMOKE PASSED")

    def seed(self):
        import django

        django.setup()
        from django.db import connection

        from notifications.models import WebhookEndpoint
        from soak.receiver import Receiver
        from soak.world import build_world

        self.receiver = Receiver().start()
        world = build_world(kinds=["shopify"], receiver_url=self.receiver.url)
        self.receiver.secret = WebhookEndpoint.objects.get(pk=world.endpoint_id).signing_secret
        connection.close()
        log(f"seeded one Shopify bag charged in the sandbox (order {world.bags[0].order_id})")
        return world

    def start(self) -> None:
        services = [web_service(self.env, self.port, self.log_dir)]
        services += [role_worker_service(self.env, queue, self.log_dir) for queue in queues.QUEUES]
        services.append(processes.beat_service(self.env, self.log_dir))
        for service in services:
            service.start(ready_timeout=90)
            self.services.append(service)
        log("web (gunicorn.conf.py), a worker per queue (" + ", ".join(queues.QUEUES) + ") and beat are up")

    def get(self, path: str, **kwargs):
        import requests

        return requests.get(f"{self.base}{path}", timeout=10, **kwargs)

    def check_ready(self) -> None:
        import requests

        state: dict = {}

        def ready() -> bool:
            try:
                response = self.get("/readyz")
            except requests.RequestException:
                return False
            state["body"] = response.text
            return response.status_code == 200

        try:
            wait_until(ready, 60, "/readyz")
        except RuntimeError as exc:
            raise SmokeFailed(f"/readyz never answered 200: {state.get('body')}") from exc
        body = json.loads(state["body"])
        check(
            body["failing"] == [] and not any(c.get("skipped") for c in body["checks"].values()),
            f"/readyz 200 with every check run: {', '.join(body['checks'])}",
        )
        check(self.get("/healthz", headers={"Host": "10.0.0.1"}).status_code == 200, "/healthz answers a pod-IP Host")

    def check_static(self) -> None:
        response = self.get("/static/admin/css/base.css")
        check(
            response.status_code == 200 and "text/css" in response.headers.get("Content-Type", ""),
            "whitenoise serves collected static files",
        )

    def drive(self, world) -> None:
        import requests

        from platforms.adapters.shopify import shopify_hmac
        from soak.intents import shopify_body
        from soak.world import APP_SECRET, SHOP_DOMAIN

        bag = world.bags[0]
        body = shopify_body(bag, SHOPIFY_REFUND_ID, towel=False)
        request_id = f"prod-smoke-{uuid.uuid4().hex[:12]}"
        webhook_id = f"prod-smoke-{uuid.uuid4()}"
        response = requests.post(
            f"{self.base}/webhooks/shopify/{world.shopify_public_id}/",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": "refunds/create",
                "X-Shopify-Shop-Domain": SHOP_DOMAIN,
                "X-Shopify-API-Version": "2026-01",
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": f"evt-{webhook_id}",
                "X-Shopify-Triggered-At": "2026-03-03T13:41:20.000Z",
                "X-Shopify-Hmac-Sha256": shopify_hmac(world.shopify_secret, body),
                "X-Request-ID": request_id,
            },
            timeout=10,
        )
        check(response.status_code == 200, f"signed Shopify refunds/create accepted ({response.status_code})")
        check(response.headers.get("X-Request-ID") == request_id, "the request id is returned")

        login = requests.post(
            f"{self.base}/v1/login",
            json={"username": "soak-api", "password": "soak-api-password-1"},
            headers={"X-Violet-App-Id": str(world.app_id), "X-Violet-App-Secret": APP_SECRET},
            timeout=10,
        )
        check(login.status_code == 200, "channel API login")
        headers = {
            "X-Violet-App-Id": str(world.app_id),
            "X-Violet-App-Secret": APP_SECRET,
            "X-Violet-Token": login.json()["token"],
        }
        found: dict = {}

        def completed() -> bool:
            listing = self.get(f"/v1/orders/{bag.order_id}/bags/{bag.bag_id}/refunds", headers=headers)
            refunds = listing.json() if listing.status_code == 200 else []
            found["refunds"] = refunds
            return any(r["status"] == "COMPLETED" for r in refunds)

        try:
            wait_until(completed, SETTLE_SECONDS, "refund COMPLETED", interval=1)
        except RuntimeError as exc:
            raise SmokeFailed(f"no COMPLETED refund through the channel API: {found.get('refunds')}") from exc
        refund = next(r for r in found["refunds"] if r["status"] == "COMPLETED")
        check(
            refund["external_id"] == str(SHOPIFY_REFUND_ID) and refund["amount"] == 4320,
            f"channel API reads refund {refund['id']} COMPLETED, 43.20 USD, from the Shopify refund",
        )
        read = self.get(f"/v1/orders/{bag.order_id}/refunds/{refund['id']}", headers=headers)
        check(read.status_code == 200 and read.json()["status"] == "COMPLETED", "channel API single refund read")

        def announced() -> bool:
            return len(self.receiver.received) >= 1

        try:
            wait_until(announced, 60, "channel webhook", interval=1)
        except RuntimeError as exc:
            raise SmokeFailed("the channel's receiver got no webhook (notifications worker, beat relay)") from exc
        check(
            self.receiver.bad_signatures == 0,
            f"the channel received {sum(self.receiver.received.values())} signed webhook deliveries",
        )

        lines = self._json_lines(self.log_dir / "worker-refunds.log")
        carried = [line for line in lines if line.get("request_id") == request_id]
        check(
            bool(carried) and all(line.get("task") for line in carried),
            f"the refunds worker's JSON log lines carry the webhook's request id ({len(carried)} lines)",
        )

    @staticmethod
    def _json_lines(path: Path) -> list[dict]:
        lines = []
        for text in path.read_text(errors="replace").splitlines():
            if text.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(text))
        return lines

    def check_metrics(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        check(self.get("/metrics").status_code == 401, "/metrics refuses a scrape without the token")
        response = self.get("/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"})
        check(response.status_code == 200, "/metrics answers the token")
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        check(samples.get(("violet_refunds", (("status", "COMPLETED"),))) == 1, "metrics: 1 refund COMPLETED")
        check(
            samples.get(("violet_inbound_events_last_24h", (("platform", "SHOPIFY"), ("status", "PROCESSED")))) == 1,
            "metrics: 1 Shopify inbound event PROCESSED",
        )
        stripe_ok = sum(
            v
            for (name, labels), v in samples.items()
            if name == "violet_stripe_calls_total" and ("outcome", "ok") in labels
        )
        check(stripe_ok >= 3, f"metrics: {stripe_ok:g} Stripe calls ok, counted by the workers")
        webhook_requests = sum(
            v
            for (name, labels), v in samples.items()
            if name == "violet_http_request_duration_seconds_count" and ("view", "platforms:webhook") in labels
        )
        check(webhook_requests >= 1, "metrics: webhook request latency recorded")
        check(
            samples.get(("violet_celery_queue_length", (("queue", "refunds"),))) is not None,
            "metrics: Celery queue lengths",
        )
        check(samples.get(("violet_refund_processing_seconds_count", ())) == 1, "metrics: refund processing time")

    def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.receiver:
            with contextlib.suppress(Exception):
                self.receiver.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        try:
            self.database.drop()
        except Exception as exc:
            log(f"could not drop {self.database.name}: {exc}")

    def print_logs(self) -> None:
        for service in self.services:
            print(f"--- {service.name} (last lines) ---\n{service.log_tail(30)}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PROD_SMOKE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a server's maintenance database, where the smoke's own database is created and dropped",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs directory")
    args = parser.parse_args(argv)

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    smoke = Smoke(args)
    status = 1
    try:
        smoke.run()
        status = 0
    except SmokeFailed as exc:
        log(f"FAILED: {exc}")
        smoke.print_logs()
    except KeyboardInterrupt:
        log("interrupted: stopping everything the smoke started")
        status = 130
    except Exception:
        import traceback

        traceback.print_exc()
        smoke.print_logs()
        log("the smoke itself failed")
        status = 2
    finally:
        smoke.stop()
        if args.keep_logs or status != 0:
            log(f"logs kept in {smoke.log_dir}")
        else:
            shutil.rmtree(smoke.work_dir, ignore_errors=True)
    print("PROD SMOKE " + ("PASSED" if status == 0 else "FAILED"), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

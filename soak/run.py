"""`make soak`: N refund intents through the production shape on loopback, under chaos, then settle
and print the invariant table. Exit 0 only when every invariant holds. See soak/README.md.

    python soak/run.py [--refunds N] [--seconds LIMIT] [--seed S] [--settle-seconds S] [--keep-db]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from soak import processes  # noqa: E402
from soak.processes import Database, free_port  # noqa: E402

DB_PREFIX = "violet_soak_"
# Beat and engine settings scaled down from production so a run settles in minutes (names: settings.py).
SCALED_SETTINGS = {
    "REFUND_SWEEP_INTERVAL_SECONDS": "10",
    "REFUND_STUCK_AFTER_SECONDS": "30",
    "WEBHOOK_RELAY_INTERVAL_SECONDS": "5",
    "INBOUND_EVENT_REQUEUE_INTERVAL_SECONDS": "10",
    "INBOUND_EVENT_REQUEUE_AFTER_SECONDS": "30",
    "WEBHOOK_DELIVERY_STUCK_AFTER_SECONDS": "30",
    "REFUND_LOOKUP_BACKOFF_MAX_SECONDS": "30",
    "PLATFORM_POLL_INTERVAL_SECONDS": "60",
    "REFUND_RETRY_BACKOFF_MAX_SECONDS": "30",
    "CELERY_VISIBILITY_TIMEOUT": "120",
    "STRIPE_SANDBOX_LATENCY_MS": "20",
}

_started = time.monotonic()


def log(message: str) -> None:
    print(f"[soak {time.monotonic() - _started:7.1f}s] {message}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refunds", type=int, default=1000, help="refunds the intents should end in (1000)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length of the load + chaos window (default: 120 s up to 200 refunds, else 0.6 s per refund)",
    )
    parser.add_argument("--settle-seconds", type=float, default=240, help="most time to wait for settling (240)")
    parser.add_argument("--seed", type=int, default=13, help="seeds the plan, the fault mix and the kills (13)")
    parser.add_argument("--fault-ratio", type=float, default=0.18, help="share of Stripe calls faulted (0.18)")
    parser.add_argument("--load-threads", type=int, default=6, help="bags worked on at once (6)")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("SOAK_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the soak database at the end")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 120.0 if args.refunds <= 200 else round(args.refunds * 0.6)
    return args


def environment(database_url: str, redis_url: str) -> dict:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIOLET_CRASH_", "PYTEST_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DEBUG": "false",
            "SECRET_KEY": "soak-secret-key-" + os.urandom(16).hex(),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "STRIPE_SANDBOX_ALLOWED": "true",  # DEBUG off on the sandbox: allowed explicitly (issue #16)
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, no TLS proxy in front
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(PROJECT_DIR),
            # The channel's webhook receiver runs on loopback: allowed explicitly, as production never is.
            "OUTBOUND_ALLOWED_PRIVATE_NETWORKS": "127.0.0.1/32",
            # One app, one merchant key and one client address drive all the load: the rate limits would
            # measure the harness, not the product.
            "API_RATE_LIMIT": "0",
            "NOTICE_API_RATE_LIMIT": "0",
            "LOGIN_RATE_PER_IP": "0",
            "LOGIN_RATE_PER_USERNAME": "0",
            **SCALED_SETTINGS,
        }
    )
    env.pop("STRIPE_API_KEY", None)  # the built-in sandbox, always
    return env


class Run:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_dir = PROJECT_DIR / "soak" / "logs" / stamp
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.database = Database(args.postgres_url, f"{DB_PREFIX}{os.getpid()}")
        self.redis_port = free_port()
        self.redis = processes.redis_service(self.redis_port, self.log_dir)
        self.services = []  # started app processes, stopped in reverse
        self.supervisor = None
        self.receiver = None
        self.summary: dict = {
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "refunds_target": args.refunds,
            "seed": args.seed,
            "chaos_seconds": args.seconds,
            "log_dir": str(self.log_dir.relative_to(PROJECT_DIR)),
            "scaled_settings": SCALED_SETTINGS,
        }

    # --- phases ---------------------------------------------------------------------------------------

    def execute(self) -> int:
        dropped = Database.drop_leftovers(self.args.postgres_url, DB_PREFIX)
        if dropped:
            log(f"dropped databases left by killed runs: {', '.join(dropped)}")
        self.database.create()
        log(f"database {self.database.name}; redis on port {self.redis_port}; logs in {self.log_dir}")
        self.env = environment(self.database.url, f"redis://127.0.0.1:{self.redis_port}/0")
        os.environ.update(self.env)
        import django

        django.setup()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=PROJECT_DIR, env=self.env, check=True
        )
        self.redis.start()
        self.world, self.client = self.seed()
        self.start_app()
        from django.db import connection

        connection.close()
        self.client.login()
        self.load_and_chaos()
        self.settle()
        self.stop_app()
        return self.verdict()

    def seed(self):
        from soak.intents import Client, plan_kinds
        from soak.receiver import Receiver
        from soak.world import build_world

        self.receiver = Receiver().start()
        kinds = plan_kinds(self.args.refunds, self.rng)
        began = time.monotonic()
        world = build_world(kinds=kinds, receiver_url=self.receiver.url)
        from notifications.models import WebhookEndpoint

        self.receiver.secret = WebhookEndpoint.objects.get(pk=world.endpoint_id).signing_secret
        # Issue 14: channel refunds of the Shopify merchant are forwarded to Shopify before money moves;
        # the receiver plays that Shopify's refund endpoints (soak/README.md, "Forwarding").
        self.env["SHOPIFY_ADMIN_API_URL"] = self.receiver.shopify_admin_api_url
        self.summary["bags"] = dict(Counter(kinds))
        log(f"seeded {len(world.bags)} bags charged and paid out in the sandbox ({time.monotonic() - began:.1f}s)")
        self.port = free_port()
        return world, Client(f"http://127.0.0.1:{self.port}", world)

    def start_app(self):
        from soak.chaos import Supervisor

        self.gunicorn = processes.gunicorn_service(self.env, self.port, self.log_dir)
        self.workers = [processes.worker_service(self.env, name, self.log_dir) for name in ("w1", "w2")]
        self.beat = processes.beat_service(self.env, self.log_dir)
        for service in (self.gunicorn, *self.workers, self.beat):
            service.start(ready_timeout=90)
            self.services.append(service)
        processes.wait_until(self._healthy, 30, "gunicorn /healthz")
        self.supervisor = Supervisor([self.redis, *self.services], log)
        self.supervisor.start()
        log("gunicorn, worker nodes w1 and w2 (2 children each) and beat are up")

    def _healthy(self) -> bool:
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def load_and_chaos(self):
        from soak.chaos import Chaos, FaultInjector
        from soak.intents import run_load

        many = self.args.refunds >= 100
        self.injector = FaultInjector(ratio=self.args.fault_ratio, rng=random.Random(self.args.seed + 1), log=log)
        self.chaos = Chaos(
            workers=self.workers,
            redis=self.redis,
            database=self.database,
            supervisor=self.supervisor,
            rng=random.Random(self.args.seed + 2),
            seconds=self.args.seconds,
            redis_kills=2 if many else 1,
            db_kills=2 if many else 1,
            log=log,
        )
        stop = threading.Event()
        self.injector.start()
        self.chaos.start()
        began = time.monotonic()
        load = threading.Thread(
            target=run_load,
            args=(self.client, self.world.bags),
            kwargs={"seconds": self.args.seconds * 0.8, "threads": self.args.load_threads, "stop": stop, "log": log},
            name="load",
            daemon=True,
        )
        load.start()
        try:
            while time.monotonic() - began < self.args.seconds or load.is_alive():
                time.sleep(1)
                if time.monotonic() - began > self.args.seconds * 3:
                    log("the load is far behind its window: stopping it")
                    stop.set()
                    load.join(timeout=120)
                    break
        finally:
            stop.set()
            self.chaos.stop()
            self.injector.stop()
        cleared = self.injector.clear()
        self.summary["load_seconds"] = round(time.monotonic() - began, 1)
        log(f"chaos over after {self.summary['load_seconds']}s; {cleared} unused fault units cleared")

    def settle(self):
        """Wait (bounded) until no refund is PROCESSING, no inbound event RECEIVED, no delivery pending."""
        from django.db import connection

        from notifications.models import WebhookDelivery
        from platforms.models import InboundEvent
        from refunds.models import Refund
        from soak.chaos import _db_retry

        def pending() -> dict:
            return {
                "refunds PROCESSING": Refund.objects.filter(status="PROCESSING").count(),
                "inbound events RECEIVED": InboundEvent.objects.filter(status="RECEIVED").count(),
                "deliveries pending": WebhookDelivery.objects.filter(status__in=["CREATED", "IN_PROGRESS"]).count(),
            }

        began = time.monotonic()
        settled_at: dict = {}
        last_log = 0.0
        state = {}
        while True:
            state = _db_retry(pending)
            elapsed = time.monotonic() - began
            for name, count in state.items():
                if count == 0:
                    settled_at.setdefault(name, round(elapsed, 1))
                else:
                    settled_at.pop(name, None)
            if not any(state.values()) or elapsed > self.args.settle_seconds:
                break
            if elapsed - last_log >= 15:
                log(f"settling: {state}")
                last_log = elapsed
            time.sleep(2)
        connection.close()
        self.summary["settle"] = {
            "seconds": round(time.monotonic() - began, 1),
            "timeout": self.args.settle_seconds,
            "unsettled": {k: v for k, v in state.items() if v},
            "settled_after_seconds": settled_at,
        }
        log(f"settle: {self.summary['settle']}")

    def stop_app(self):
        if self.supervisor:
            self.supervisor.stop()
        for service in reversed(self.services):
            service.stop()
        self.services = []

    def verdict(self) -> int:
        from refunds.models import Refund
        from soak import invariants, report

        refunds = list(Refund.objects.order_by("pk"))
        intents = self.client.intents
        checks = []
        checks += invariants.check_statuses(refunds)
        checks += invariants.check_stripe_vs_records(refunds)
        checks += invariants.check_limits(refunds)
        checks += invariants.check_intents(intents, refunds)
        checks += invariants.check_early_attempts(refunds)
        checks += invariants.check_outbox(refunds, self.receiver)
        checks += invariants.check_forwarding(refunds, self.receiver)
        checks += invariants.check_inbound()
        reconcile_checks, reconcile_output = invariants.check_reconcile(self.env)
        checks += reconcile_checks

        chaos_counts = Counter(event.kind for event in self.chaos.events)
        self.summary.update(
            {
                "refunds": len(refunds),
                "intents": {
                    "sent": len(intents),
                    "acknowledged": sum(i.acknowledged for i in intents),
                    "refused (4xx)": sum(bool(i.rejected) and not i.acknowledged for i in intents),
                    "requests": sum(len(i.requests) for i in intents),
                },
                "faults": self.injector.stats(),
                "chaos_counts": dict(chaos_counts),
                "chaos_events": [vars(e) for e in self.chaos.events],
                "restarts": self.supervisor.restarts,
                "self_deaths": self.supervisor.self_deaths,
                "reconcile_output": reconcile_output.splitlines()[:500],
                "intent_details": [i.as_dict() for i in intents if not i.acknowledged or len(i.refund_ids) > 1][:500],
                "duration_seconds": round(time.monotonic() - _started, 1),
            }
        )
        json_path, md_path = report.write(self.summary, checks)
        print()
        print(report.table(checks))
        print()
        for check in checks:
            if check.note:
                print(f"- {check.name}: {check.note}")
            for case in check.cases[:8] if not check.ok else []:
                print(f"    {case}")
            if not check.ok and len(check.cases) > 8:
                print(f"    ... {len(check.cases) - 8} more in {md_path.relative_to(PROJECT_DIR)}")
        faults = self.summary["faults"]
        print(
            f"\nStripe calls: {faults['stripe_calls']}, "
            f"faulted {faults['faulted_calls']} ({faults['faulted_percent']} %); "
            f"chaos: {dict(chaos_counts)}; died on their own: {len(self.supervisor.self_deaths)}; "
            f"run {self.summary['duration_seconds']}s. Reports: {json_path.relative_to(PROJECT_DIR)}, "
            f"{md_path.relative_to(PROJECT_DIR)}"
        )
        failed = [c.name for c in checks if not c.ok]
        print("SOAK " + ("PASSED" if not failed else f"FAILED: {len(failed)} invariants broken"))
        return 0 if not failed else 1

    def cleanup(self):
        with contextlib.suppress(Exception):
            self.chaos.stop()
        with contextlib.suppress(Exception):
            self.injector.stop()
        with contextlib.suppress(Exception):
            self.stop_app()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.receiver:
            with contextlib.suppress(Exception):
                self.receiver.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if self.args.keep_db:
            log(f"kept database {self.database.name} ({self.database.url})")
        else:
            try:
                self.database.drop()
            except Exception as exc:
                log(f"could not drop {self.database.name}: {exc}")


def main(argv=None) -> int:
    args = parse_args(argv)

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    run = Run(args)
    try:
        return run.execute()
    except KeyboardInterrupt:
        log("interrupted: stopping everything the soak started")
        return 130
    except Exception:
        import traceback

        traceback.print_exc()
        log("the harness itself failed (exit 2)")
        return 2
    finally:
        run.cleanup()


if __name__ == "__main__":
    sys.exit(main())

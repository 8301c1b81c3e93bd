"""Refund pipeline benchmark: refunds per second from recorded (PROCESSING, enqueued) to COMPLETED.

    python bench/pipeline.py [--refunds N] [--latency-ms MS] [--concurrency C]
                             [--pool threads|prefork|gevent] [--quick]

What it does, all on 127.0.0.1 and cleaning up after itself:
1. creates its own PostgreSQL database `violet_bench_<pid>` and migrates it;
2. builds N bags, each charged and paid out (merchant + channel transfers) in the Stripe sandbox
   through refunds.services.checkout.order_charge_and_transfer (no simulated latency while building);
3. starts a real Celery worker (its own queue `bench-<pid>` on Redis) whose sandbox adds
   --latency-ms to every Stripe call, as the network would;
4. records one full refund per bag (refund_record, enqueued on commit, exactly as in production)
   and waits, with a deadline, until every refund is final;
5. writes its section of bench/report.md and bench/results/pipeline.json; stops the worker, deletes
   its queue keys and drops the database.

The theoretical limit is concurrency / (Stripe calls per refund x latency): each worker slot spends
at least that long waiting on Stripe per refund. The ratio says how close the pipeline gets; the gap
is our own work (database, broker, Python) on this machine's 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
REPORT = BENCH_DIR / "report.md"
RESULTS = BENCH_DIR / "results" / "pipeline.json"
SECTION_START = "<!-- bench:pipeline:start -->"
SECTION_END = "<!-- bench:pipeline:end -->"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _server_of(database_url: str) -> str:
    """The maintenance database on the server DATABASE_URL points at, when it is PostgreSQL."""
    if database_url.startswith(("postgres://", "postgresql://")):
        return with_database(database_url, "postgres")
    return DEFAULT_POSTGRES


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refunds", type=int, default=None, help="Refunds to process (300; 100 with --quick).")
    parser.add_argument("--latency-ms", type=int, default=100, help="Simulated latency per Stripe call (100).")
    parser.add_argument("--concurrency", type=int, default=16, help="Pool size of each worker process (16).")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="Worker processes (2: one per core; threads share one core because of the GIL).",
    )
    parser.add_argument("--node", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pool", default="threads", choices=("threads", "prefork", "gevent"), help="(threads)")
    parser.add_argument("--quick", action="store_true", help="A smaller run for CI and `make bench` (~1 min).")
    parser.add_argument("--timeout", type=float, default=None, help="Seconds to wait for completion (derived).")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL") or _server_of(os.environ.get("DATABASE_URL", "")),
        help="Server to create the throw-away database on (BENCH_POSTGRES_URL, else DATABASE_URL's server).",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS,
        help="Redis broker (BENCH_REDIS_URL, else REDIS_URL); only the bench's own queue keys are touched.",
    )
    parser.add_argument("--no-report", action="store_true", help="Print the results without writing files.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: run as the worker
    parser.add_argument("--queue", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.refunds is None:
        args.refunds = 100 if args.quick else 300
    if args.refunds < 1 or args.concurrency < 1 or args.processes < 1 or args.latency_ms < 0:
        parser.error("--refunds and --concurrency must be at least 1, --latency-ms at least 0.")
    if args.pool == "gevent":
        try:
            import gevent  # noqa: F401
        except ImportError:
            parser.error("--pool gevent needs the gevent package, which is not installed; use threads.")
    for name in ("postgres_url", "redis_url"):
        host = urlsplit(getattr(args, name)).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"--{name.replace('_', '-')} must point at this machine (127.0.0.1), got {host}.")
    return args


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def log(message: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- worker mode ----------------------------------------------------------------------------------


def run_worker(args) -> None:
    """The worker process: the project's Celery app on the bench's own queue (retries included)."""
    sys.path.insert(0, str(ROOT))
    from violet_refunds.celery import app

    app.conf.task_default_queue = args.queue
    app.worker_main(
        [
            "worker",
            "-P",
            args.pool,
            "-c",
            str(args.concurrency),
            "-Q",
            args.queue,
            "-n",
            f"{args.queue}-{args.node}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ]
    )


def start_worker(args, queue: str, database_url: str, log_path: Path, node: int = 0) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            "STRIPE_SANDBOX_LATENCY_MS": str(args.latency_ms),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--queue",
        queue,
        "--pool",
        args.pool,
        "--concurrency",
        str(args.concurrency),
        "--node",
        str(node),
        "--postgres-url",
        args.postgres_url,
        "--redis-url",
        args.redis_url,
    ]
    handle = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_worker(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


# --- the world ------------------------------------------------------------------------------------


def build_bags(count: int) -> list:
    """`count` bags of $113.00 (2 x $50 + $5 shipping + $8 tax, 10% commission), each its own order,
    charged and paid out in the sandbox."""
    from decimal import Decimal

    from django.utils import timezone

    from platforms.models import Merchant, Platform
    from refunds.models import App, Bag, Order, OrderSku
    from refunds.services.checkout import order_charge_and_transfer
    from stripe_sandbox import ledger

    app = App.objects.create(
        name="Bench channel", secret_hash="!", stripe_account_id="acct_benchchannel0001", commission_rate=Decimal(10)
    )
    merchant = Merchant.objects.create(
        name="Bench merchant", platform=Platform.SHOPIFY, currency="USD", stripe_account_id="acct_benchmerchant001"
    )
    for account in (app.stripe_account_id, merchant.stripe_account_id):
        ledger.create_account(account_id=account, balance=0, currency="usd")
    bags = []
    for index in range(count):
        order = Order.objects.create(
            app=app, currency="USD", sub_total=10000, shipping_total=500, tax_total=800, discount_total=0, total=11300
        )
        bag = Bag.objects.create(
            order=order,
            merchant=merchant,
            external_id=f"bench-{index}",
            currency="USD",
            sub_total=10000,
            shipping_total=500,
            tax_total=800,
            discount_total=0,
            total=11300,
            commission_rate=Decimal(10),
            placed_at=timezone.now(),
        )
        OrderSku.objects.create(bag=bag, name="Bench item", quantity=2, price=5000, line_price=10000)
        order_charge_and_transfer(order=order)
        bags.append(bag)
    return bags


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure(args, bag_ids: list[int], calls_before: int, wall_seconds: float, *, enqueued_at) -> dict:
    from refunds.models import Refund, RefundStatus
    from stripe_sandbox.models import SandboxRefund, SandboxRequest

    rows = list(Refund.objects.filter(bag_id__in=bag_ids).values_list("status", "date_created", "date_completed"))
    completed = [done for status, _created, done in rows if status == RefundStatus.COMPLETED and done]
    # From the moment every refund was handed to the workers to each one's completion.
    latencies = [(done - enqueued_at).total_seconds() for done in completed]
    span = max(latencies) if latencies else 0.0
    calls = SandboxRequest.objects.count() - calls_before
    calls_per_refund = calls / len(completed) if completed else 0.0
    throughput = len(completed) / span if span > 0 else 0.0
    latency_s = args.latency_ms / 1000
    slots = args.concurrency * args.processes
    limit = slots / (calls_per_refund * latency_s) if calls_per_refund and latency_s else None
    return {
        "refunds": args.refunds,
        "completed": len(completed),
        "not_completed": len(rows) - len(completed),
        "stripe_refunds_created": SandboxRefund.objects.count(),
        "refunds_per_second": round(throughput, 2),
        "span_seconds": round(span, 2),
        "wall_seconds": round(wall_seconds, 2),
        "latency_p50_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p99_seconds": round(percentile(latencies, 0.99), 3) if latencies else None,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "stripe_latency_ms": args.latency_ms,
        "stripe_calls": calls,
        "calls_per_refund": round(calls_per_refund, 2),
        "theoretical_limit_per_second": round(limit, 2) if limit else None,
        "ratio_to_limit": round(throughput / limit, 3) if limit else None,
    }


# --- output ---------------------------------------------------------------------------------------


def render_section(results: dict, command: str) -> str:
    r = results
    limit = f"{r['theoretical_limit_per_second']}/s" if r["theoretical_limit_per_second"] else "n/a (no latency)"
    ratio = f"{r['ratio_to_limit']:.0%}" if r["ratio_to_limit"] is not None else "n/a"
    rows = [
        (
            "refunds/s (enqueued -> COMPLETED)",
            f"{r['refunds_per_second']}",
            f"{r['completed']} recorded refunds enqueued at once, the last COMPLETED after {r['span_seconds']} s",
        ),
        ("p50 enqueued -> completed", f"{r['latency_p50_seconds']} s", "includes queueing behind earlier refunds"),
        ("p99 enqueued -> completed", f"{r['latency_p99_seconds']} s", ""),
        (
            "refund_record calls/s, one process",
            r["record_per_second_one_process"],
            "recording measured apart (production records in many processes)",
        ),
        (
            "worker pool / concurrency",
            f"{r['processes']} x {r['pool']} / {r['concurrency']}",
            "worker processes x pool / slots each; acks_late, prefetch 1",
        ),
        ("Stripe latency (simulated)", f"{r['stripe_latency_ms']} ms per call", "sandbox sleeps before answering"),
        ("Stripe calls per refund", f"{r['calls_per_refund']}", "merchant reversal, channel reversal, shopper refund"),
        ("theoretical limit", limit, "processes x concurrency / (calls per refund x latency)"),
        (
            "ratio to the limit",
            ratio,
            "below 100% = CPU: engine and in-process Stripe emulator (~70 ms CPU per refund), PostgreSQL, Redis",
        ),
        ("not completed", f"{r['not_completed']}", "must be 0"),
        ("Stripe refunds created", f"{r['stripe_refunds_created']}", "must equal the refunds: exactly once"),
    ]
    lines = [
        SECTION_START,
        "## Refund pipeline (bench/pipeline.py)",
        "",
        f"Run {r['finished_at']} on {r['machine']} (1-minute load average {r['load_average_at_start']} at the "
        f"start; anything else running on the 2 cores lowers the numbers): `{command}`.",
        "Real Celery worker on Redis and PostgreSQL (throw-away database), Stripe sandbox as the gateway.",
        "",
        "| metric | value | notes |",
        "| --- | --- | --- |",
        *[f"| {metric} | {value} | {notes} |" for metric, value, notes in rows],
        "",
        SECTION_END,
    ]
    return "\n".join(lines)


def write_outputs(results: dict, command: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    section = render_section(results, command)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n\nWritten by `make bench`.\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.write_text(text)


# --- the run --------------------------------------------------------------------------------------


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queue_keys(redis_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [
            key
            for pattern in (f"{queue}*", f"_kombu.binding.{queue}*", f"_kombu.binding_permanent.{queue}*")
            for key in client.scan_iter(match=pattern)
        ]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def wait_until_ready(celery_app, queue: str, workers, log_paths, timeout: float = 45) -> None:
    """The clock starts once every worker answers a remote-control ping (they consume by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker, log_path in zip(workers, log_paths, strict=True):
            if worker.poll() is not None:
                raise RuntimeError(f"a worker exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
        replies = celery_app.control.ping(timeout=0.5)
        if len({name for reply in replies for name in reply if queue in name}) >= len(workers):
            return
    raise RuntimeError(f"the workers did not answer within {timeout:.0f} s")


def run(args) -> tuple[dict, str]:
    pid = os.getpid()
    db_name = f"violet_bench_{pid}"
    queue = f"bench-{pid}"
    database_url = with_database(args.postgres_url, db_name)
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"violet-bench-worker-{pid}.log"
    command = " ".join(["python bench/pipeline.py", *sys.argv[1:]])

    import redis

    load_at_start = os.getloadavg()[0]  # other work on the machine skews every number below
    redis.Redis.from_url(args.redis_url, socket_connect_timeout=3).ping()
    create_database(args.postgres_url, db_name)
    log(f"database {db_name} created; queue {queue} on {args.redis_url}")
    workers: list[subprocess.Popen] = []
    try:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
                "DATABASE_URL": database_url,
                "REDIS_URL": args.redis_url,
                "STRIPE_SANDBOX_LATENCY_MS": "0",  # building the world is not what we measure
                "LOG_LEVEL": "WARNING",
            }
        )
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from refunds.models import Refund, RefundSource, RefundStatus
        from refunds.services import refund_record
        from stripe_sandbox.models import SandboxRequest
        from violet_refunds.celery import app as celery_app

        celery_app.conf.task_default_queue = queue
        call_command("migrate", verbosity=0)
        started = time.monotonic()
        bags = build_bags(args.refunds)
        log(f"{len(bags)} funded bags built in {time.monotonic() - started:.1f} s")

        log_paths = [log_path.with_suffix(f".{node}.log") for node in range(args.processes)]
        workers = [start_worker(args, queue, database_url, path, node=node) for node, path in enumerate(log_paths)]
        wait_until_ready(celery_app, queue, workers, log_paths)

        calls_before = SandboxRequest.objects.count()
        bag_ids = [bag.pk for bag in bags]
        # Recording is measured on its own: in production many web and worker processes record in
        # parallel, while one loop here would make the whole pipeline wait on it.
        started = time.monotonic()
        refund_ids = [
            refund_record(
                bag=bag, source=RefundSource.CHANNEL_API, actor="bench", external_id=f"bench-{bag.pk}", enqueue=False
            ).refund.pk
            for bag in bags
        ]
        record_seconds = time.monotonic() - started
        log(f"{len(bags)} refunds recorded in {record_seconds:.1f} s; enqueueing them all")
        from django.utils import timezone

        from refunds.tasks import process_refund

        enqueued_at = timezone.now()
        started = time.monotonic()
        for refund_id in refund_ids:
            process_refund.delay(refund_id)

        expected = args.refunds * 3 * args.latency_ms / 1000 / (args.concurrency * args.processes)
        timeout = args.timeout or max(60.0, 4 * expected + 30)
        deadline = started + timeout
        while time.monotonic() < deadline:
            pending = Refund.objects.filter(bag_id__in=bag_ids, status=RefundStatus.PROCESSING).count()
            if pending == 0:
                break
            for worker, path in zip(workers, log_paths, strict=True):
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker died:\n{path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        wall = time.monotonic() - started
        results = measure(args, bag_ids, calls_before, wall, enqueued_at=enqueued_at)
        results["record_per_second_one_process"] = round(len(refund_ids) / record_seconds, 1)
        results.update(
            {
                "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
                "load_average_at_start": round(load_at_start, 2),
                "timed_out": results["not_completed"] > 0,
                "command": command,
            }
        )
        connections.close_all()
        return results, command
    finally:
        for worker in workers:
            stop_worker(worker)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up yet; the drop below is what matters
            pass
        drop_database(args.postgres_url, db_name)
        delete_queue_keys(args.redis_url, queue)
        log(f"database {db_name} dropped, queue {queue} deleted, worker stopped")
        for path in [log_path, *(log_path.with_suffix(f".{node}.log") for node in range(args.processes))]:
            if path.exists():
                path.unlink()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    results, command = run(args)
    for key in (
        "refunds_per_second",
        "latency_p50_seconds",
        "latency_p99_seconds",
        "calls_per_refund",
        "theoretical_limit_per_second",
        "ratio_to_limit",
        "completed",
        "not_completed",
    ):
        print(f"{key:>30}: {results[key]}")
    if not args.no_report:
        write_outputs(results, command)
        log(f"wrote {REPORT.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")
    return 0 if results["not_completed"] == 0 and results["stripe_refunds_created"] == results["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())

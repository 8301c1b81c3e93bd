"""Refund pipeline benchmark: refunds per second from the first refund recorded to the last COMPLETED.

    python bench/pipeline.py [--refunds N] [--latency-ms MS] [--concurrency C] [--processes P]
                             [--pool threads|prefork|gevent] [--sandbox http|in-process] [--quick]

What it does, all on 127.0.0.1 and cleaning up after itself:
1. creates its own PostgreSQL database `violet_bench_<pid>` and migrates it;
2. builds N bags, each charged and paid out (merchant + channel transfers) in the Stripe sandbox
   through refunds.services.checkout.order_charge_and_transfer (in-process, no latency: not measured);
3. starts the Stripe sandbox in its own process (python -m stripe_sandbox.http_server, --latency-ms
   per call, the same database) and real Celery workers (their own queue `bench-<pid>` on Redis) whose
   SDK talks HTTP to it (STRIPE_SANDBOX_URL); `--sandbox in-process` puts it back inside the workers;
4. starts the clock and the CPU meters, records one full refund per bag (refund_record in a few
   threads, enqueued on commit, exactly as in production) and waits, with a deadline, until every
   refund is final;
5. writes its section of bench/report.md and its JSON (bench/results/pipeline.json, or --results);
   stops the workers and the sandbox, deletes its queue keys and drops the database.

The slot limit is slots / (Stripe calls per refund x latency): each worker slot spends at least that
long waiting on Stripe per refund. The CPU limit is cores / CPU per refund: the product's (workers,
recording threads, their PostgreSQL backends) is metered apart from the sandbox's (its process and its
backends, application_name violet-stripe-sandbox). The ratio to the slot limit says how close the
pipeline gets; the CPU numbers say what the gap is made of.

This file is the entry point and the run; the rest lives beside it: bench/pipeline_world.py (database,
queue keys, funded bags), bench/pipeline_workers.py (the Celery workers, and this file's --worker mode)
and bench/pipeline_results.py (the numbers, the report section and the JSON).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipeline_results import REPORT, RESULTS, measure, write_outputs  # noqa: E402 - the project root first
from bench.pipeline_workers import (  # noqa: E402
    SandboxServer,
    pipeline_meter,
    record_refunds,
    run_worker,
    start_sandbox,
    start_worker,
    stop_worker,
    wait_until_ready,
)
from bench.pipeline_world import (  # noqa: E402
    build_bags,
    configure_process_environment,
    create_database,
    delete_queue_keys,
    drop_database,
)

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
    parser.add_argument(
        "--sandbox",
        default="http",
        choices=("http", "in-process"),
        help="The Stripe sandbox in its own process, over HTTP (http: its CPU apart from ours), or inside "
        "the workers as the SDK's transport (in-process).",
    )
    parser.add_argument("--recorders", type=int, default=4, help="Threads recording the refunds (4).")
    parser.add_argument(
        "--warmup", type=int, default=None, help="Refunds processed before the clock starts (one per slot)."
    )
    parser.add_argument("--results", default=str(RESULTS), help="Where the JSON goes (bench/results/pipeline.json).")
    parser.add_argument("--no-report", action="store_true", help="Print the results without writing files.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: run as the worker
    parser.add_argument("--queue", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.refunds is None:
        args.refunds = 100 if args.quick else 300
    if args.refunds < 1 or args.concurrency < 1 or args.processes < 1 or args.latency_ms < 0 or args.recorders < 1:
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


# --- the run --------------------------------------------------------------------------------------


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
    sandbox: SandboxServer | None = None
    sandbox_url = ""
    try:
        configure_process_environment(database_url, args.redis_url)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from refunds.models import Refund, RefundStatus
        from stripe_sandbox.models import SandboxEvent, SandboxRefund, SandboxRequest
        from violet_refunds.celery import app as celery_app

        celery_app.conf.task_default_queue = queue
        celery_app.conf.task_routes = {"*": {"queue": queue}}  # as the workers (pipeline_workers.run_worker)
        call_command("migrate", verbosity=0)
        started = time.monotonic()
        warmup = args.processes * args.concurrency if args.warmup is None else args.warmup
        all_bags = build_bags(args.refunds + warmup)
        warmup_bags, bags = all_bags[:warmup], all_bags[warmup:]
        log(f"{len(all_bags)} funded bags built in {time.monotonic() - started:.1f} s ({warmup} for the warm-up)")

        if args.sandbox == "http":
            sandbox = start_sandbox(args, database_url, log_path.with_suffix(".sandbox.log"))
            sandbox_url = sandbox.url
        log_paths = [log_path.with_suffix(f".{node}.log") for node in range(args.processes)]
        workers = [
            start_worker(args, queue, database_url, path, node=node, sandbox_url=sandbox_url)
            for node, path in enumerate(log_paths)
        ]
        wait_until_ready(celery_app, queue, workers, log_paths)

        def wait_until_final(bag_ids: list[int], deadline: float) -> None:
            while time.monotonic() < deadline:
                pending = Refund.objects.filter(bag_id__in=bag_ids, status=RefundStatus.PROCESSING).count()
                if pending == 0:
                    return
                for worker, path in zip(workers, log_paths, strict=True):
                    if worker.poll() is not None:
                        raise RuntimeError(f"a worker died:\n{path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.25)

        if warmup_bags:
            # Discarded: every slot's first refund pays for its database connection, its SDK session
            # and the imports on first use; the measured refunds run in the steady state.
            record_refunds(warmup_bags, threads=args.recorders)
            wait_until_final([bag.pk for bag in warmup_bags], time.monotonic() + 60)
            log(f"{len(warmup_bags)} warm-up refunds processed")

        counts_before = {
            "calls": SandboxRequest.objects.count(),
            "stripe_refunds": SandboxRefund.objects.count(),
            "events": SandboxEvent.objects.count(),
        }
        bag_ids = [bag.pk for bag in bags]
        meter = pipeline_meter(args, db_name, workers, sandbox)
        # The clock starts before the first refund is recorded: recording (refund_record, enqueued on
        # commit as in production) is part of the pipeline. A few threads record, as several web and
        # worker processes would; their CPU (thread time) is the product's too.
        from django.utils import timezone

        started_at = timezone.now()
        started = time.monotonic()
        meter.start()
        recorded = record_refunds(bags, threads=args.recorders)
        record_seconds = time.monotonic() - started
        log(f"{len(bags)} refunds recorded (and enqueued) in {record_seconds:.1f} s by {args.recorders} threads")

        expected = args.refunds * 3 * args.latency_ms / 1000 / (args.concurrency * args.processes)
        timeout = args.timeout or max(60.0, 4 * expected + 30)
        wait_until_final(bag_ids, started + timeout)
        wall = time.monotonic() - started
        cpu = meter.stop()
        cpu["recording_python"] = round(recorded.cpu_seconds, 3)
        results = measure(args, bag_ids, counts_before, wall, started_at=started_at, cpu=cpu)
        results["warmup_refunds"] = warmup
        results["record_seconds"] = round(record_seconds, 2)
        results["recorders"] = args.recorders
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
        if sandbox is not None:
            stop_worker(sandbox.process)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up yet; the drop below is what matters
            pass
        drop_database(args.postgres_url, db_name)
        delete_queue_keys(args.redis_url, queue)
        log(f"database {db_name} dropped, queue {queue} deleted, worker stopped")
        for path in [
            log_path,
            log_path.with_suffix(".sandbox.log"),
            *(log_path.with_suffix(f".{node}.log") for node in range(args.processes)),
        ]:
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
        "product_cpu_ms_per_refund",
        "sandbox_cpu_ms_per_refund",
        "cpu_limit_per_second",
        "completed",
        "not_completed",
    ):
        print(f"{key:>30}: {results[key]}")
    if not args.no_report:
        write_outputs(results, command, Path(args.results))
        written = f"{REPORT.relative_to(ROOT)} and " if Path(args.results).resolve() == RESULTS.resolve() else ""
        log(f"wrote {written}{args.results}")
    return 0 if results["not_completed"] == 0 and results["stripe_refunds_created"] == results["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())

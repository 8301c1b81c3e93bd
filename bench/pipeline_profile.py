"""The pipeline's product CPU per refund, in one process, with a profile of where it goes.

    python bench/pipeline_profile.py [--refunds N] [--warmup W] [--top K] [--no-profile] [--save FILE]
                                     [--postgres-url URL] [--redis-url URL]

What it does, on 127.0.0.1, cleaning up after itself:
1. creates its own PostgreSQL database `violet_profile_<pid>` (on BENCH_POSTGRES_URL, else DATABASE_URL's
   server) and migrates it; builds N + W funded bags (bench/pipeline_world.build_bags);
2. starts the Stripe sandbox in its own process (python -m stripe_sandbox.http_server, no latency), so
   none of its CPU is in this process: what remains is the product's, the SDK's HTTP client included;
3. runs Celery tasks eagerly in this thread (task_always_eager): each refund is recorded exactly as
   bench/pipeline.py records it (refunds.services.refund_record, enqueued on commit) and every task it
   causes (engine passes, outbox deliveries, notifications) runs right there, to the end;
4. prints the Python CPU per refund (time.process_time over the N measured refunds, after W discarded
   warm-up refunds), the tasks run per refund by name, and, unless --no-profile, a second measured
   pass under cProfile with its top functions by tottime and by cumulative time.

The CPU number has no profiler overhead (the first pass runs without it). The profile times CPU
(time.process_time, not the wall: waits on HTTP and SQL are not in it), and cProfile inflates its
total, most for code made of many small calls (the ORM). PostgreSQL's backend CPU is in neither
number (bench/pipeline.py meters it).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pipeline import DEFAULT_REDIS, _server_of, with_database  # noqa: E402 - the project root first
from bench.pipeline_workers import start_sandbox, stop_worker  # noqa: E402
from bench.pipeline_world import build_bags, configure_process_environment, create_database, drop_database  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refunds", type=int, default=40, help="Measured refunds per pass (40).")
    parser.add_argument("--warmup", type=int, default=5, help="Refunds processed first and discarded (5).")
    parser.add_argument("--top", type=int, default=25, help="Functions listed per ordering (25).")
    parser.add_argument("--no-profile", action="store_true", help="Only the unprofiled CPU pass.")
    parser.add_argument("--save", default="", help="Also write the profile here (pstats / snakeviz format).")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL") or _server_of(os.environ.get("DATABASE_URL", "")),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    db_name = f"violet_profile_{os.getpid()}"
    database_url = with_database(args.postgres_url, db_name)
    create_database(args.postgres_url, db_name)
    sandbox = None
    try:
        configure_process_environment(database_url, args.redis_url)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        passes = 1 if args.no_profile else 2
        bags = build_bags(args.warmup + passes * args.refunds)  # built with the sandbox in-process, unmeasured

        sandbox = start_sandbox(
            argparse.Namespace(redis_url=args.redis_url, latency_ms=0),
            database_url,
            Path(os.environ.get("TMPDIR", "/tmp")) / f"violet-profile-{os.getpid()}.sandbox.log",
        )
        # From here on the SDK talks HTTP to the sandbox's own process (read per call by the client).
        settings.STRIPE_SANDBOX_URL = sandbox.url
        os.environ["STRIPE_SANDBOX_URL"] = sandbox.url

        from celery.signals import task_prerun

        from refunds.models import Refund, RefundSource, RefundStatus
        from refunds.services import refund_record
        from violet_refunds.celery import app as celery_app

        celery_app.conf.task_always_eager = True
        tasks_run: collections.Counter[str] = collections.Counter()

        def count_task(sender=None, **_kwargs) -> None:
            tasks_run[sender.name] += 1

        task_prerun.connect(count_task, weak=False)

        def record(chunk) -> None:
            for bag in chunk:
                refund_record(bag=bag, source=RefundSource.CHANNEL_API, actor="bench", external_id=f"bench-{bag.pk}")

        warmup, rest = bags[: args.warmup], bags[args.warmup :]
        record(warmup)
        tasks_run.clear()

        measured = rest[: args.refunds]
        started = time.process_time()
        record(measured)
        cpu = time.process_time() - started
        statuses = collections.Counter(Refund.objects.filter(bag__in=measured).values_list("status", flat=True))
        print(f"refunds: {len(measured)}, statuses: {dict(statuses)}")
        print(f"Python CPU per refund (no profiler): {cpu * 1000 / len(measured):.1f} ms")
        print("tasks per refund: " + ", ".join(f"{n} {c / len(measured):.2f}" for n, c in tasks_run.most_common()))
        if statuses.get(RefundStatus.PROCESSING):
            print("WARNING: refunds left PROCESSING; the numbers above miss their remaining passes")

        if not args.no_profile:
            profiled = rest[args.refunds : 2 * args.refunds]
            profiler = cProfile.Profile(time.process_time)  # CPU, not the wall (waits on HTTP and SQL)
            profiler.enable()
            record(profiled)
            profiler.disable()
            if args.save:
                profiler.dump_stats(args.save)
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats(order).print_stats(args.top)
                print(f"--- top {args.top} by {order} (profiled pass, {len(profiled)} refunds) ---")
                print(out.getvalue())
        return 0
    finally:
        if sandbox is not None:
            stop_worker(sandbox.process)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up yet; the drop below is what matters
            pass
        drop_database(args.postgres_url, db_name)


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: the product measured against the bare stack, side by side, in one run.

    python bench/run.py [--quick] [--postgres-url URL] [--redis-url URL] [--skip PART ...]

What it does, all on 127.0.0.1, cleaning up after itself (database dropped, queue deleted, every
process stopped), each load run bounded by wrk's duration:
1. makes sure wrk is installed (scripts/ensure-wrk.sh), checks PostgreSQL and Redis;
2. creates its own PostgreSQL database, migrates it, creates the baselines' tables (raw SQL) and
   builds the data with set-based SQL (bench/seed.py): refunds for the channel API, then the
   million refunds (1% failed) of the admin benchmark (--quick: fewer, and the report says so);
3. starts one gunicorn (bench.settings_bench: the product's URLs plus the baselines) and drives it
   with wrk: the baselines (bench/baseline_views.py) and the product endpoints they stand for,
   each after a warm-up; counts queries in-process with CaptureQueriesContext;
4. runs bench/pipeline.py (refunds/s through real Celery workers) as a subprocess;
5. samples peak RSS (VmHWM) of the web workers and of the Celery worker;
6. writes bench/report.md (the table: metric, product, baseline, ratio, target, met?) and
   bench/report.json.

This file is the entry point and the orchestration (steps 1, 4 and 6); the rest lives beside it:
bench/services.py (wrk, PostgreSQL, Redis), bench/world.py (the data and wrk's input files),
bench/measuring.py (the plan, targets, alternating wrk runs, query counts) and bench/web.py (step 3).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402 - the project root must be importable first
from bench.measuring import Plan  # noqa: E402
from bench.services import (  # noqa: E402
    create_database,
    delete_queue_keys,
    drop_database,
    drop_stale_databases,
    ensure_wrk,
    postgres_version,
    redis_client,
)
from bench.tools import PeakMemory, die_with_parent, log, stop_process_group  # noqa: E402
from bench.web import run_web  # noqa: E402

BENCH_DIR = ROOT / "bench"
PIPELINE_SCRIPT = BENCH_DIR / "pipeline.py"
PIPELINE_RESULTS = BENCH_DIR / "results" / "pipeline.json"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# "slots": the pipeline's second run at 2 x 64 slots (it may take most of PostgreSQL's connections while
# the product has no connection pool: skip it on a server others are using).
PARTS = ("webhook", "api", "admin", "pipeline", "slots")


def _server_of(database_url: str) -> str:
    if database_url.startswith(("postgres://", "postgresql://")):
        return with_database(database_url, "postgres")
    return DEFAULT_POSTGRES


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer rows and shorter runs (under 3 minutes).")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL") or _server_of(os.environ.get("DATABASE_URL", "")),
        help="Server to create the throw-away database on (BENCH_POSTGRES_URL, else DATABASE_URL's server).",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS,
        help="Redis (BENCH_REDIS_URL, else REDIS_URL); only the bench's own queue keys are written and deleted.",
    )
    parser.add_argument(
        "--db-prefix",
        default=os.environ.get("BENCH_DB_PREFIX", "violet_bench_web"),
        help="The throw-away database is <prefix>_<pid> (violet_bench_web).",
    )
    parser.add_argument("--skip", action="append", choices=PARTS, default=[], help="Leave a part out (repeatable).")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (2 x cores + 1).")
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"), help="gunicorn worker class.")
    parser.add_argument("--threads", type=int, default=1, help="Threads per gthread worker (1).")
    parser.add_argument("--no-report", action="store_true", help="Print the results without writing the reports.")
    args = parser.parse_args(argv)
    for name in ("postgres_url", "redis_url"):
        host = urlsplit(getattr(args, name)).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"--{name.replace('_', '-')} must point at this machine (127.0.0.1), got {host}.")
    if args.workers is None:
        args.workers = 2 * (os.cpu_count() or 1) + 1
    return args


# --- the run --------------------------------------------------------------------------------------


# The second pipeline run: many slots (2 x 64 threads) against PostgreSQL's connection limit; every
# refund must end final (none left PROCESSING), whatever its rate.
SLOTS_RUN_CONCURRENCY = 64


def run_pipeline(args, plan: Plan, results: dict, *, key: str = "pipeline", extra: tuple[str, ...] = ()) -> None:
    """bench/pipeline.py (its own database, Celery workers and sandbox server); its JSON is read back
    into results[key]."""
    results_path = PIPELINE_RESULTS if key == "pipeline" else PIPELINE_RESULTS.with_name(f"{key}.json")
    command = [
        sys.executable,
        str(PIPELINE_SCRIPT),
        "--redis-url",
        args.redis_url,
        "--postgres-url",
        args.postgres_url,
        "--results",
        str(results_path),
        *extra,
    ]
    if plan.quick:
        command.append("--quick")
    started = time.time()
    log("pipeline: " + " ".join(command[1:]))
    # SIGINT (not TERM) when stopped early: pipeline.py then drops its database and queue on the way out.
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, preexec_fn=die_with_parent(signal.SIGINT))
    try:
        with PeakMemory(process.pid) as memory:
            process.wait(timeout=240 if plan.quick else 900)
    except subprocess.TimeoutExpired:
        results[f"{key}_error"] = "bench/pipeline.py did not finish in time"
        return
    finally:
        if process.poll() is None:
            stop_process_group(process, grace=60, first=signal.SIGINT)
    if key == "pipeline":
        results["memory"] = {
            **results.get("memory", {}),
            "celery_worker_peak_mib": memory.peak_mib(matching="--worker"),
            "sandbox_server_peak_mib": memory.peak_mib(matching="stripe_sandbox.http_server"),
        }
    if not results_path.exists() or results_path.stat().st_mtime < started:
        results[f"{key}_error"] = f"bench/pipeline.py exited {process.returncode} without writing its results"
        return
    results[key] = json.loads(results_path.read_text())
    results[key]["exit_code"] = process.returncode


def _exit_on_sigterm(signum, frame):
    # `finally` blocks then stop the server and drop the database, as on Ctrl-C.
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    plan = Plan.for_mode(args.quick)
    run_started = time.monotonic()
    results: dict = {"mode": "quick" if plan.quick else "full"}
    results["machine"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": postgres_version(args.postgres_url),
        "wrk": ensure_wrk(),
        # This machine may be shared: the load before and after says how noisy the run was.
        "load_average_before": [round(value, 2) for value in os.getloadavg()],
    }
    redis_client(args.redis_url).ping()
    pid = os.getpid()
    db_name = f"{args.db_prefix}_{pid}"
    queue = f"violet-bench-ingest-{pid}"
    database_url = with_database(args.postgres_url, db_name)
    from cryptography.fernet import Fernet

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            "BENCH_CELERY_QUEUE": queue,
            "BENCH_BASELINE_HMAC_SECRET": secrets.token_hex(16),
            # Production shape: DEBUG off, its own keys.
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "STRIPE_SANDBOX_ALLOWED": "true",  # DEBUG off on the sandbox: allowed explicitly (issue #16)
            "SECURE_SSL_REDIRECT": "false",  # wrk speaks plain HTTP to gunicorn on loopback
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "LOG_LEVEL": "WARNING",
            # One app makes every channel API request: its rate limit is counted, never reached.
            "API_RATE_LIMIT": "1000000/s",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    results["conn_max_age"] = os.environ.get("CONN_MAX_AGE", "60 (the product's default)")
    work_dir = Path(tempfile.mkdtemp(prefix="violet-bench-"))
    web_parts = set(PARTS[:3]) - set(args.skip)
    if web_parts:
        for stale in drop_stale_databases(args.postgres_url, args.db_prefix):
            log(f"dropped {stale}, left behind by a run that was killed")
        create_database(args.postgres_url, db_name)
        log(f"database {db_name}, queue {queue} on {args.redis_url}")
        try:
            run_web(args, plan, database_url, work_dir, results)
        finally:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            drop_database(args.postgres_url, db_name)
            delete_queue_keys(args.redis_url, queue)
            shutil.rmtree(work_dir, ignore_errors=True)
            log(f"database {db_name} dropped, queue {queue} deleted, server stopped")
    if "pipeline" not in args.skip:
        run_pipeline(args, plan, results)
    if "slots" in args.skip:
        results["pipeline_slots_error"] = "skipped (--skip slots)"
    elif "pipeline" not in args.skip:
        run_pipeline(
            args,
            plan,
            results,
            key="pipeline_slots",
            extra=("--concurrency", str(SLOTS_RUN_CONCURRENCY), "--warmup", "0"),
        )
    results["machine"]["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    results["elapsed_seconds"] = round(time.monotonic() - run_started, 1)
    results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["command"] = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    document = report.build(results, plan)
    print(report.render_table(document))
    if not args.no_report:
        report.write(document)
        log("wrote bench/report.md and bench/report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402 - the project root must be importable first
from bench.tools import (  # noqa: E402
    LoadResult,
    PeakMemory,
    Server,
    ServerConfig,
    die_with_parent,
    log,
    run_wrk,
    stop_process_group,
)

BENCH_DIR = ROOT / "bench"
PIPELINE_SCRIPT = BENCH_DIR / "pipeline.py"
PIPELINE_RESULTS = BENCH_DIR / "results" / "pipeline.json"
SHOPIFY_FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "refunds_create.json"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
PARTS = ("webhook", "api", "admin", "pipeline")

SHOP_DOMAIN = "bench-shop.myshopify.com"
CONNECTIONS = 16
WRK_THREADS = 2
BODIES_PER_THREAD = 2000
SKU_COUNTS = (1, 10, 50)
FALLBACK_FAILED_QUERY = "status__in=FAILED,PARTIALLY_COMPLETED"


@dataclass(frozen=True)
class Plan:
    quick: bool
    api_refunds: int
    admin_refunds: int
    rounds: int  # measured runs per endpoint, alternating with its baseline
    round_seconds: int
    warmup_seconds: int
    admin_seconds: int

    @property
    def seconds(self) -> int:
        return self.rounds * self.round_seconds

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick=True,
                api_refunds=10_000,
                admin_refunds=50_000,
                rounds=4,
                round_seconds=2,
                warmup_seconds=1,
                admin_seconds=5,
            )
        return cls(
            quick=False,
            api_refunds=100_000,
            admin_refunds=1_000_000,
            rounds=6,
            round_seconds=5,
            warmup_seconds=3,
            admin_seconds=15,
        )


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


# --- services -------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        log("wrk is missing: installing it (scripts/ensure-wrk.sh)")
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-wrk.sh")], check=True, timeout=600)
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False, timeout=10)
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright ...": the name and version are enough.
    return " ".join((version.stdout or version.stderr).split()[:2])


def _psycopg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def postgres_version(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_stale_databases(admin_url: str, prefix: str) -> list[str]:
    """Databases an earlier run left behind when it was killed outright (its pid is gone)."""
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        names = [
            row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "_%"])
        ]
        stale = [
            name
            for name in names
            if name.rsplit("_", 1)[1].isdigit() and not Path(f"/proc/{name.rsplit('_', 1)[1]}").exists()
        ]
        for name in stale:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return stale


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3)


def delete_queue_keys(redis_url: str, queue: str) -> None:
    client = redis_client(redis_url)
    try:
        keys = [
            key
            for pattern in (queue, f"{queue}\x06*", f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            for key in client.scan_iter(match=pattern)
        ]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    app_id: int
    app_secret: str
    token: str
    merchant_id: int
    webhook_public_id: str
    webhook_secret: str
    operator_id: int


def build_world() -> World:
    """The channel (app, owner, token), the Shopify merchant and its connection, an operator."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from platforms.models import Merchant, Platform, StoreConnection
    from refunds.api.auth import TokenType, token_issue
    from refunds.models import App, AppMembership

    app_secret = secrets.token_urlsafe(24)
    app = App.objects.create(
        name="Bench channel",
        secret_hash=make_password(app_secret),  # the production hasher: the API's per-process cache is measured too
        stripe_account_id="acct_benchchannel001",
        commission_rate=10,
    )
    users = get_user_model()
    owner = users.objects.create_user("bench-owner", "owner@example.com", secrets.token_urlsafe(16))
    AppMembership.objects.create(app=app, user=owner, role=AppMembership.Role.OWNER)
    token = token_issue(user=owner, app=app, token_type=TokenType.ACCESS)
    merchant = Merchant.objects.create(
        name="Bench merchant",
        platform=Platform.SHOPIFY,
        store_url=f"https://{SHOP_DOMAIN}",
        currency="USD",
        stripe_account_id="acct_benchmerchant01",
    )
    webhook_secret = "shpss_" + secrets.token_hex(16)
    connection = StoreConnection.objects.create(
        merchant=merchant,
        webhook_secret=webhook_secret,
        credentials={"shop_domain": SHOP_DOMAIN, "access_token": "shpat_bench"},
        status=StoreConnection.Status.CONNECTED,
    )
    operator = users.objects.create_superuser("bench-operator", "operator@example.com", secrets.token_urlsafe(16))
    return World(
        app_id=app.pk,
        app_secret=app_secret,
        token=token,
        merchant_id=merchant.pk,
        webhook_public_id=str(connection.public_id),
        webhook_secret=webhook_secret,
        operator_id=operator.pk,
    )


def write_deliveries(directory: Path, name: str, *, secret: str, signer) -> str:
    """Signed Shopify refunds/create bodies (~2 KB, the captured fixture with a new refund id each),
    one file per wrk thread; returns the prefix bench/lua/signed_post.lua reads."""
    fixture = json.loads(SHOPIFY_FIXTURE.read_text())
    prefix = directory / name
    refund_id = 930_000_000
    for thread in range(WRK_THREADS):
        lines = []
        for _ in range(BODIES_PER_THREAD):
            refund_id += 1
            payload = {**fixture, "id": refund_id, "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}"}
            body = json.dumps(payload, separators=(",", ":")).encode()
            lines.append(f"{signer(secret, body)}\t{body.decode()}")
        Path(f"{prefix}.{thread}").write_text("\n".join(lines) + "\n")
    return str(prefix)


def delivery_body_size() -> int:
    fixture = json.loads(SHOPIFY_FIXTURE.read_text())
    return len(json.dumps({**fixture, "id": 930_000_001}, separators=(",", ":")).encode())


def write_paths(path: Path, template: str, ids: list[int]) -> str:
    path.write_text("\n".join(template.format(id=i) for i in ids) + "\n")
    return str(path)


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Target:
    """One endpoint under load: what wrk requests, and with which script arguments per round."""

    name: str
    path: str
    script: str
    headers: dict[str, str] | None = None
    script_args: Callable[[str], list[str]] | None = None  # round label -> arguments
    connections: int = CONNECTIONS

    def arguments(self, label: str) -> list[str] | None:
        return self.script_args(label) if self.script_args else None


def compare(server: Server, plan: Plan, targets: list[Target], *, rounds: int, seconds: int) -> dict[str, LoadResult]:
    """A warm-up of each target, then `rounds` measured runs of each, alternating (ABBA...), so a
    neighbour's burst of load on this shared machine falls on both sides alike. Runs are merged:
    requests over total time, percentiles from the merged latency histogram."""
    measured: dict[str, list[LoadResult]] = {target.name: [] for target in targets}

    def run(target: Target, label: str, duration: int) -> LoadResult:
        return run_wrk(
            server.base_url + target.path,
            script=target.script,
            seconds=duration,
            connections=target.connections,
            threads=min(WRK_THREADS, target.connections),
            headers=target.headers,
            script_args=target.arguments(label),
        )

    for target in targets:
        run(target, "warm", plan.warmup_seconds)
    for index in range(rounds):
        for target in targets if index % 2 == 0 else list(reversed(targets)):
            measured[target.name].append(run(target, f"run{index}", seconds))
    merged = {name: LoadResult.merge(runs) for name, runs in measured.items()}
    for name, result in merged.items():
        log(
            f"{name}: {result.requests_per_second:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, errors {result.failed_requests}; runs {result.per_run_rps}"
        )
    return merged


def count_queries(client, path: str, **headers) -> tuple[int, int, bytes]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, headers=headers)
    return len(captured.captured_queries), response.status_code, response.content


def failed_refunds_query() -> tuple[str, str]:
    """The admin's failed-refunds filter (H9's `?triage=failed`), or a plain status filter."""
    try:
        from refunds.admin import triage

        return f"{triage.TRIAGE_PARAMETER}={triage.TRIAGE_FAILED}", "the admin's Failed refunds view"
    except (ImportError, AttributeError):
        return FALLBACK_FAILED_QUERY, "status filter (the admin has no failed-refunds view yet)"


def rows_on_page(content: bytes) -> int:
    return content.count(b'name="_selected_action"')


# --- the run --------------------------------------------------------------------------------------


def run_web(args, plan: Plan, database_url: str, work_dir: Path, results: dict) -> None:
    """Everything measured through gunicorn: webhook, channel API, admin."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.utils import timezone

    from bench import seed
    from bench.baseline_views import BASELINE_TABLES_SQL, EVENT_ID_HEADER, SIGNATURE_HEADER, body_signature
    from platforms.adapters.shopify import HMAC_HEADER, TOPIC_HEADER, WEBHOOK_ID_HEADER, shopify_hmac
    from platforms.models import InboundEvent
    from refunds.api.auth import APP_ID_HEADER, APP_SECRET_HEADER, TOKEN_HEADER

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_TABLES_SQL)
    world = build_world()
    now = timezone.now()
    # Numbers up to admin_refunds are the admin's million; the SKU-count probes come after them.
    origin = seed.origin_for(plan.admin_refunds, now=now)
    seed.seed_refunds(first=1, last=plan.api_refunds, app_id=world.app_id, merchant_id=world.merchant_id, origin=origin)
    probes = {}
    for offset, skus in enumerate(SKU_COUNTS, start=1):
        number = plan.admin_refunds + offset
        seed.seed_refunds(
            first=number, last=number, app_id=world.app_id, merchant_id=world.merchant_id, origin=origin, skus=skus
        )
        probes[skus] = number
    seed.seed_baseline_parents(count=plan.api_refunds)
    seed.analyze()
    results["seed"] = {"api_refunds": plan.api_refunds, "seconds": round(time.monotonic() - started, 1)}
    log(f"database ready: {plan.api_refunds} refunds with their orders, bags, lines and money moves")

    public_id = world.webhook_public_id
    product_deliveries = write_deliveries(work_dir, "shopify", secret=world.webhook_secret, signer=shopify_hmac)
    baseline_deliveries = write_deliveries(
        work_dir, "baseline", secret=os.environ["BENCH_BASELINE_HMAC_SECRET"], signer=body_signature
    )
    ids = list(range(1, plan.api_refunds + 1))
    random.Random(9).shuffle(ids)
    api_paths = write_paths(work_dir / "api-paths", "/v1/orders/{id}/refunds/{id}", ids)
    parent_paths = write_paths(work_dir / "parent-paths", "/bench/parents/{id}", ids)
    api_headers = {APP_ID_HEADER: str(world.app_id), APP_SECRET_HEADER: world.app_secret, TOKEN_HEADER: world.token}

    client = Client()
    client.force_login(get_user_model().objects.get(pk=world.operator_id))
    session_cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    triage_query, triage_label = failed_refunds_query()
    admin_path = f"/admin/refunds/refund/?{triage_query}"

    # Query counts (in-process, same database): API by SKU count, admin at the API's scale.
    api_queries = {}
    for skus, number in probes.items():
        queries, status, body = count_queries(client, f"/v1/orders/{number}/refunds/{number}", **api_headers)
        if status != 200 or len(json.loads(body)["skus"]) != skus:
            raise RuntimeError(f"API probe with {skus} SKUs answered {status}: {body[:300]!r}")
        api_queries[skus] = queries
    parent_queries, status, _ = count_queries(client, "/bench/parents/1")
    results["api_queries"] = {"by_sku_count": api_queries, "baseline": parent_queries}
    admin_queries_small, status, body = count_queries(client, admin_path)
    if status != 200:
        raise RuntimeError(f"admin changelist answered {status}")
    results["admin_queries"] = {str(plan.api_refunds + len(SKU_COUNTS)): admin_queries_small}

    server_config = ServerConfig(workers=args.workers, worker_class=args.worker_class, threads=args.threads)
    server = Server(server_config, dict(os.environ), work_dir / "gunicorn.log")
    results["server"] = server_config.describe()
    server.start()
    log(f"{server_config.describe()} on {server.base_url}")
    try:
        with PeakMemory(server.process.pid) as web_memory:
            loads: dict[str, LoadResult] = {}
            measure = partial(compare, server, plan, rounds=plan.rounds, seconds=plan.round_seconds)
            loads.update(measure([Target("plain", "/bench/plain", "plain.lua")]))
            if "webhook" not in args.skip:
                loads.update(
                    measure(
                        [
                            Target(
                                "signed_insert",
                                "/bench/signed-insert",
                                "signed_post.lua",
                                script_args=lambda label: [
                                    baseline_deliveries,
                                    SIGNATURE_HEADER,
                                    EVENT_ID_HEADER,
                                    label,
                                ],
                            ),
                            Target(
                                "webhook",
                                f"/webhooks/shopify/{public_id}/",
                                "signed_post.lua",
                                headers={
                                    TOPIC_HEADER: "refunds/create",
                                    "X-Shopify-Shop-Domain": SHOP_DOMAIN,
                                    "X-Shopify-API-Version": "2026-01",
                                },
                                script_args=lambda label: [product_deliveries, HMAC_HEADER, WEBHOOK_ID_HEADER, label],
                            ),
                        ]
                    )
                )
                # wrk counts the answers received before its deadline; the database and the queue
                # hold everything the server accepted (warm-up included): one event, one message each.
                results["webhook_check"] = {
                    "answered": loads["webhook"].requests,
                    "events_stored_measured": InboundEvent.objects.filter(event_id__startswith="run").count(),
                    "events_stored_all": InboundEvent.objects.count(),
                    "queued_messages": int(redis_client(args.redis_url).llen(os.environ["BENCH_CELERY_QUEUE"])),
                    "baseline_answered": loads["signed_insert"].requests,
                    "baseline_rows_measured": _count(
                        "SELECT count(*) FROM bench_signed_event WHERE event_id LIKE 'run%%'"
                    ),
                    "body_bytes": delivery_body_size(),
                }
            if "api" not in args.skip:
                loads.update(
                    measure(
                        [
                            Target(
                                "parent_children", "/bench/parents/1", "paths.lua", script_args=lambda _: [parent_paths]
                            ),
                            Target(
                                "api",
                                "/v1/orders/1/refunds/1",
                                "paths.lua",
                                headers=api_headers,
                                script_args=lambda _: [api_paths],
                            ),
                        ]
                    )
                )
            if "admin" not in args.skip:
                grown = time.monotonic()
                if plan.admin_refunds > plan.api_refunds:
                    log(f"growing the database to {plan.admin_refunds:,} refunds for the admin")
                    seed.seed_refunds(
                        first=plan.api_refunds + 1,
                        last=plan.admin_refunds,
                        app_id=world.app_id,
                        merchant_id=world.merchant_id,
                        origin=origin,
                    )
                    seed.analyze()
                results["seed"]["admin_refunds"] = plan.admin_refunds
                results["seed"]["admin_seconds"] = round(time.monotonic() - grown, 1)
                queries, status, body = count_queries(client, admin_path)
                if status != 200:
                    raise RuntimeError(f"admin changelist answered {status}")
                total = plan.admin_refunds + len(SKU_COUNTS)
                results["admin_queries"][str(total)] = queries
                results["admin_rows_on_page"] = rows_on_page(body)
                results["admin_needing_attention"] = _count(
                    "SELECT count(*) FROM refunds_refund WHERE status IN ('FAILED', 'PARTIALLY_COMPLETED')"
                )
                results["admin_total_refunds"] = _count("SELECT count(*) FROM refunds_refund")
                results["admin_view"] = {"path": admin_path, "label": triage_label}
                loads.update(
                    compare(
                        server,
                        plan,
                        [Target("admin", admin_path, "plain.lua", headers={"Cookie": session_cookie}, connections=1)],
                        rounds=1,
                        seconds=plan.admin_seconds,
                    )
                )
            results["loads"] = {name: result.as_dict() for name, result in loads.items()}
        results["memory"] = {"web_worker_peak_mib": web_memory.peak_mib(exclude_root=True)}
    finally:
        server.stop()
        connections.close_all()


def _count(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])


def run_pipeline(args, plan: Plan, results: dict) -> None:
    """bench/pipeline.py (its own database and Celery worker); its JSON is read back."""
    command = [sys.executable, str(PIPELINE_SCRIPT), "--redis-url", args.redis_url, "--postgres-url", args.postgres_url]
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
        results["pipeline_error"] = "bench/pipeline.py did not finish in time"
        return
    finally:
        if process.poll() is None:
            stop_process_group(process, grace=60, first=signal.SIGINT)
    results["memory"] = {**results.get("memory", {}), "celery_worker_peak_mib": memory.peak_mib(matching="--worker")}
    if not PIPELINE_RESULTS.exists() or PIPELINE_RESULTS.stat().st_mtime < started:
        results["pipeline_error"] = f"bench/pipeline.py exited {process.returncode} without writing its results"
        return
    results["pipeline"] = json.loads(PIPELINE_RESULTS.read_text())
    results["pipeline"]["exit_code"] = process.returncode


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
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "LOG_LEVEL": "WARNING",
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

"""The pipeline benchmark's Celery workers: the worker mode of bench/pipeline.py, starting and stopping
worker processes, and waiting until every one answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import CpuMeter, PostgresBackends, process_tree
from bench.tools import HOST, ROOT, free_port

SANDBOX_APPLICATION_NAME = "violet-stripe-sandbox"  # stripe_sandbox.http_server.APPLICATION_NAME

PIPELINE_SCRIPT = ROOT / "bench" / "pipeline.py"  # started again with --worker


def run_worker(args) -> None:
    """The worker process: the project's Celery app on the bench's own queue (retries included)."""
    sys.path.insert(0, str(ROOT))
    from violet_refunds.celery import app

    # Every task on the bench's own queue, whatever its role's queue in production (CELERY_TASK_ROUTES):
    # the bench measures the pipeline, not the topology, and must not touch another run's queues.
    app.conf.task_default_queue = args.queue
    app.conf.task_routes = {"*": {"queue": args.queue}}
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


def _spawn(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """A child of its own session (killed as a group), its output in log_path for its whole life."""
    handle = open(log_path, "wb")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_worker(
    args, queue: str, database_url: str, log_path: Path, node: int = 0, sandbox_url: str = ""
) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            # In-process sandbox: it sleeps in the worker's thread. Out of process: the server does.
            "STRIPE_SANDBOX_LATENCY_MS": "0" if sandbox_url else str(args.latency_ms),
            "STRIPE_SANDBOX_URL": sandbox_url,
            # As production should run many slots (docs/operations.md): a pool per worker node, so
            # 2 x 64 threads share at most 2 x 40 connections (PostgreSQL allows 100) and wait for one
            # instead of being refused.
            "DATABASE_POOL": "true",
            "DATABASE_POOL_MAX_SIZE": str(min(args.concurrency, 40)),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = [
        sys.executable,
        str(PIPELINE_SCRIPT),
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
    return _spawn(command, env, log_path)


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


# --- the Stripe sandbox in its own process ----------------------------------------------------------


@dataclass
class SandboxServer:
    process: subprocess.Popen
    url: str


def start_sandbox(args, database_url: str, log_path: Path, timeout: float = 45) -> SandboxServer:
    """python -m stripe_sandbox.http_server on a free port of 127.0.0.1: the SDK's Stripe, sleeping
    --latency-ms per call, on the pipeline's database (the same sandbox tables)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            "STRIPE_SANDBOX_URL": "",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = [
        sys.executable,
        "-m",
        "stripe_sandbox.http_server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--latency-ms",
        str(args.latency_ms),
        "--pool-size",
        "8",
    ]
    process = _spawn(command, env, log_path)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox server exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/v1/balance", timeout=2)  # noqa: S310 - our own 127.0.0.1 URL
        except urllib.error.HTTPError:  # Stripe's 401 without a key: it answers
            return SandboxServer(process=process, url=url)
        except OSError:
            time.sleep(0.2)
    stop_worker(process)
    raise RuntimeError(f"the sandbox server did not answer within {timeout:.0f} s")


def pipeline_meter(args, database: str, workers, sandbox: SandboxServer | None) -> CpuMeter:
    """CPU of the product (Celery workers and their PostgreSQL sessions) apart from the sandbox's
    (its server process and its sessions, named by application_name). Sampled every 0.25 s: database
    sessions may come and go. The in-process sandbox's CPU cannot be separated: it is the workers'."""

    def worker_pids() -> list[int]:
        return [pid for worker in workers for pid in process_tree(worker.pid, include_root=True)()]

    groups = {
        "workers_python": worker_pids,
        "product_postgres": PostgresBackends(args.postgres_url, database, other_than=SANDBOX_APPLICATION_NAME),
    }
    if sandbox is not None:
        groups["sandbox_python"] = process_tree(sandbox.process.pid, include_root=True)
        groups["sandbox_postgres"] = PostgresBackends(args.postgres_url, database, application=SANDBOX_APPLICATION_NAME)
    return CpuMeter(groups, interval=0.25)


@dataclass
class Recorded:
    refund_ids: list[int]
    cpu_seconds: float  # the recording threads' own CPU (thread time)


def record_refunds(bags, *, threads: int) -> Recorded:
    """One full refund per bag, recorded and enqueued on commit exactly as in production, by `threads`
    threads of this process (each with its own database connection, closed at the end)."""
    from django.db import connections

    from refunds.models import RefundSource
    from refunds.services import refund_record

    lock = threading.Lock()
    cpu = [0.0]
    chunks = [bags[index::threads] for index in range(threads)]

    def record(chunk) -> list[int]:
        started = time.thread_time()
        try:
            return [
                refund_record(
                    bag=bag, source=RefundSource.CHANNEL_API, actor="bench", external_id=f"bench-{bag.pk}"
                ).refund.pk
                for bag in chunk
            ]
        finally:
            with lock:
                cpu[0] += time.thread_time() - started
            connections.close_all()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = [refund_id for chunk_ids in pool.map(record, chunks) for refund_id in chunk_ids]
    return Recorded(refund_ids=ids, cpu_seconds=cpu[0])

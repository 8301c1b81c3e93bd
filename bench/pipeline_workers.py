"""The pipeline benchmark's Celery workers: the worker mode of bench/pipeline.py, starting and stopping
worker processes, and waiting until every one answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.tools import ROOT

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

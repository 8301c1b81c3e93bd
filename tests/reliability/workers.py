"""Real Celery workers for the reliability suite: subprocesses on the test's PostgreSQL database and
Redis, started and always stopped by the test that needs them (docs/reliability.md, Injecting faults).

Every wait is bounded; every worker runs in its own process group, which is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from kombu import pools

from violet_refunds.celery import app as celery_app
from violet_refunds.queues import ALL_QUEUES

PROJECT_DIR = Path(settings.BASE_DIR)
READY_SECONDS = 45
DEFAULT_DEADLINE_SECONDS = 60


def database_url_for_workers() -> str:
    """The URL of the database this test runs on (pytest-django's test_<name>), for the workers."""
    db = connection.settings_dict
    credentials = db["USER"] or "postgres"
    if db.get("PASSWORD"):
        credentials += f":{db['PASSWORD']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or "5432"
    return f"postgres://{credentials}@{host}:{port}/{db['NAME']}"


def worker_environment(redis_url: str, **overrides) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIOLET_CRASH_", "PYTEST_", "COV_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "violet_refunds.settings",
            "DATABASE_URL": database_url_for_workers(),
            "REDIS_URL": redis_url,
            "CELERY_VISIBILITY_TIMEOUT": "5",
            "REFUND_RETRY_BACKOFF_BASE_SECONDS": "0.2",
            "REFUND_RETRY_BACKOFF_MAX_SECONDS": "1",
            "REFUND_MAX_ATTEMPTS": "6",
            "REFUND_STUCK_AFTER_SECONDS": "1",
            "STRIPE_SANDBOX_LATENCY_MS": "0",
            "CONN_MAX_AGE": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # The local webhook receiver listens on 127.0.0.1: outbound requests may go there.
            "OUTBOUND_ALLOWED_PRIVATE_NETWORKS": "127.0.0.1/32",
        }
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


class Worker:
    """`celery -A violet_refunds worker` on every role's queue (prefork, 2 children) in its own process
    group."""

    def __init__(self, env: dict, log_path: Path, *, pool: str = "prefork", concurrency: int = 2):
        self.env = env
        self.log_path = log_path
        self.name = f"h7-{uuid.uuid4().hex[:8]}@%h"
        self.command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "violet_refunds",
            "worker",
            "-Q",
            ALL_QUEUES,
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            self.name,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "INFO",
        ]
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> Worker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: " ready." in self.log() or self.process.poll() is not None, READY_SECONDS, self)
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def terminate(self, timeout: float = 20) -> int | None:
        """Warm shutdown (SIGTERM to the main process): running tasks finish first."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stop the worker and every child it forked, whatever state they are in. The test is over:
        no need for a warm shutdown; whatever it left in Redis is purged by the fixture."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None


def wait_for(condition: Callable[[], bool], timeout: float = DEFAULT_DEADLINE_SECONDS, worker=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    details = f"\n--- worker log ---\n{worker.log_tail()}" if worker else ""
    raise AssertionError(f"condition not met within {timeout:.0f}s{details}")


class LiveBroker:
    """Switch this process's Celery app to the real Redis broker (no eager tasks); restore after."""

    _KEYS = ("task_always_eager", "broker_url", "broker_transport_options")

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self._saved: dict = {}

    def _reset_pools(self) -> None:
        # kombu keeps one pool per broker URL in a global registry: close and forget them all, so the
        # next publish connects to the broker now configured.
        pools.reset()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    def __enter__(self) -> LiveBroker:
        self._saved = {key: celery_app.conf[key] for key in self._KEYS}
        celery_app.conf.task_always_eager = False
        celery_app.conf.broker_url = self.redis_url
        celery_app.conf.broker_transport_options = {"visibility_timeout": 5}
        self._reset_pools()
        return self

    def __exit__(self, *exc) -> None:
        self._reset_pools()
        for key, value in self._saved.items():
            celery_app.conf[key] = value

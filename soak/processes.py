"""The production shape on loopback: a throw-away PostgreSQL database, our own redis-server, gunicorn,
two Celery worker nodes and one beat, each a subprocess in its own process group so that it can be
killed (and restarted, as a restart policy would) and is always stopped at the end.

No Django here: this module runs before Django is configured (the database must exist first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from violet_refunds.queues import ALL_QUEUES

PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise RuntimeError(f"{what}: not ready within {timeout:.0f}s")


def children_of(pid: int) -> list[int]:
    """Direct children of a process, read from /proc (no psutil in the venv)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: ppid is the 2nd field after ')'.
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, ...
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):  # a killed child awaiting its reaping
            found.append(int(entry))
    return found


# --- PostgreSQL ------------------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database `name` on the server of `admin_url` (created here, dropped by `drop`)."""

    admin_url: str
    name: str

    @property
    def url(self) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{self.name}"

    def _admin(self):
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def create(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def terminate_backends(self) -> int:
        """Every backend of the soak database, as an operator's restart or a failover would."""
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    @staticmethod
    def drop_leftovers(admin_url: str, prefix: str) -> list[str]:
        """Databases left by soak runs that were killed outright (their pid is gone)."""
        dropped = []
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
            names = [row[0] for row in rows]
            for name in names:
                suffix = name[len(prefix) :]
                pid = int(suffix) if suffix.isdigit() else None
                if pid and Path(f"/proc/{pid}").exists():
                    continue  # another soak still running
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
        return dropped


# --- subprocesses ----------------------------------------------------------------------------------


@dataclass
class Service:
    """One long-running subprocess, in its own process group, logging to a file."""

    name: str
    command: list[str]
    env: dict
    log_path: Path
    ready_text: str | None = None  # a line in the log that says it is up
    process: subprocess.Popen | None = None
    starts: int = 0
    killed_by_us: bool = False
    deaths: list = field(default_factory=list)  # (time, returncode, cause) of every exit seen

    def start(self, ready_timeout: float = 60) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it; closed when we stop
        marker = log.tell()
        self.process = subprocess.Popen(  # noqa: S603 - fixed commands built in this module
            self.command,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        self.killed_by_us = False
        if self.ready_text:
            wait_until(
                lambda: self.ready_text in self.log_since(marker) or self.process.poll() is not None,
                ready_timeout,
                self.name,
            )
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        return self

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_group(self) -> None:
        """kill -9 of the whole node (main process and every child): a crash, an OOM kill."""
        if self.process is None:
            return
        self.killed_by_us = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def kill_child(self, rng) -> int | None:
        """kill -9 of one pool child of the node (the main process restarts it)."""
        if not self.alive():
            return None
        kids = children_of(self.process.pid)
        if not kids:
            return None
        victim = rng.choice(kids)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        return victim

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the group, then SIGKILL whatever is left."""
        if self.process is None:
            return
        self.killed_by_us = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def redis_service(port: int, log_dir: Path) -> Service:
    return Service(
        name="redis",
        command=[
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        env=dict(os.environ),
        log_path=log_dir / "redis.log",
        ready_text="Ready to accept connections",
    )


def gunicorn_service(env: dict, port: int, log_dir: Path, workers: int = 2, threads: int = 4) -> Service:
    return Service(
        name="gunicorn",
        command=[
            str(Path(sys.executable).parent / "gunicorn"),
            "violet_refunds.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--access-logfile",
            "-",
        ],
        env=env,
        log_path=log_dir / "gunicorn.log",
        ready_text="Booting worker",
    )


def worker_service(env: dict, name: str, log_dir: Path, concurrency: int = 2, queues: str = ALL_QUEUES) -> Service:
    """A Celery worker node consuming `queues` (comma-separated; default every role's queue: the soak's
    chaos kills whole nodes, so each of its two nodes must be able to do all the work)."""
    return Service(
        name=name,
        command=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "violet_refunds",
            "worker",
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--concurrency",
            str(concurrency),
            "-l",
            "INFO",
        ],
        env=env,
        log_path=log_dir / f"{name}.log",
        ready_text=" ready.",
    )


def beat_service(env: dict, log_dir: Path) -> Service:
    return Service(
        name="beat",
        command=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "violet_refunds",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(log_dir / "celerybeat-schedule"),
            "--pidfile=",
        ],
        env=env,
        log_path=log_dir / "beat.log",
        ready_text="beat: Starting",
    )

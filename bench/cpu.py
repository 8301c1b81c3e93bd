"""CPU time of the processes a benchmark drives, read from /proc: Python processes (gunicorn and Celery
workers, the sandbox server) and the PostgreSQL backends serving them.

Why in-process CPU next to requests/s: on a shared 2-core machine wall-clock rates move with the
neighbours' load, while the CPU seconds our processes and their database sessions spend per request
(or per refund) barely do. utime + stime of /proc/<pid>/stat count every thread of a process.

PostgreSQL backends are found in pg_stat_activity by database (and application_name, which tells the
out-of-process Stripe sandbox's sessions from the product's). A backend that starts during a
measurement counts from zero; one that exits keeps the last value sampled, so meters that may see
sessions come and go sample in a background thread (`interval`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


class PostgresBackends:
    """Pids of the client backends connected to one database, optionally filtered by application_name
    (`application` to keep, `other_than` to leave out). Uses its own connection, itself left out."""

    def __init__(self, admin_url: str, database: str, *, application: str = "", other_than: str = ""):
        self.admin_url = admin_url.replace("postgres://", "postgresql://", 1)
        self.database = database
        self.application = application
        self.other_than = other_than
        self._connection = None
        self._lock = threading.Lock()

    def __call__(self) -> list[int]:
        import psycopg

        sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        params: list = [self.database]
        if self.application:
            sql += " AND application_name = %s"
            params.append(self.application)
        if self.other_than:
            sql += " AND application_name <> %s"
            params.append(self.other_than)
        with self._lock:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
            return [row[0] for row in self._connection.execute(sql, params).fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def process_tree(root_pid: int, *, include_root: bool = False) -> Callable[[], list[int]]:
    """The descendants of a process (gunicorn's workers, a Celery worker's pool), now."""
    from bench.tools import descendants

    def pids() -> list[int]:
        return ([root_pid] if include_root else []) + descendants(root_pid)

    return pids


def fixed(pids: Iterable[int]) -> Callable[[], list[int]]:
    frozen = list(pids)
    return lambda: frozen


@dataclass
class CpuMeter:
    """CPU seconds spent by each named group of processes between start() and stop()."""

    groups: dict[str, Callable[[], Iterable[int]]]
    interval: float | None = None  # sample in a thread this often (processes that come and go)
    _first: dict[str, dict[int, float]] = field(default_factory=dict)
    _last: dict[str, dict[int, float]] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CpuMeter:
        self._first = {name: {} for name in self.groups}
        self._last = {name: {} for name in self.groups}
        for name, pids in self.groups.items():
            for pid in pids():
                value = cpu_seconds(pid)
                if value is not None:
                    self._first[name][pid] = self._last[name][pid] = value
        if self.interval:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        for name, pids in self.groups.items():
            for pid in pids():
                value = cpu_seconds(pid)
                if value is None:
                    continue
                self._first[name].setdefault(pid, 0.0)  # started during the measurement: all of it counts
                self._last[name][pid] = value

    def stop(self) -> dict[str, float]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        self.sample()
        return self.totals()

    def totals(self) -> dict[str, float]:
        return {
            name: round(sum(self._last[name][pid] - first for pid, first in self._first[name].items()), 3)
            for name in self.groups
        }

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

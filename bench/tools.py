"""The processes a benchmark drives: the gunicorn server, wrk, and a sampler of peak memory.

Everything binds to 127.0.0.1, runs in its own process group and is stopped (TERM, then KILL) by
the code that started it; every wrk run is bounded by its duration.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "bench" / "lua"
HOST = "127.0.0.1"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def die_with_parent(sig: int = signal.SIGTERM):
    """A Popen preexec_fn: the child gets `sig` when the bench process dies, however it dies (Linux
    prctl PR_SET_PDEATHSIG), so a killed bench never leaves a server running."""

    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, in the parent: the child only calls prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)

    return preexec


def stop_process_group(process: subprocess.Popen | None, *, grace: float = 10, first: int = signal.SIGTERM) -> None:
    """Signal the process group (TERM, or `first`), wait, then KILL whatever is left."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


# --- gunicorn -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """One gunicorn configuration for the product and the baselines alike."""

    workers: int
    worker_class: str
    threads: int
    keep_alive: int = 5

    def describe(self) -> str:
        threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
        return f"gunicorn {self.worker_class}, {self.workers} workers{threads}, keep-alive {self.keep_alive} s"

    def arguments(self) -> list[str]:
        return [
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--threads",
            str(self.threads),
            "--keep-alive",
            str(self.keep_alive),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]


class Server:
    """gunicorn serving bench.settings_bench (the product's URLs plus the baselines) on 127.0.0.1."""

    def __init__(self, config: ServerConfig, env: dict[str, str], log_path: Path):
        self.config = config
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, *, timeout: float = 60) -> None:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "violet_refunds.wsgi:application",
            "--bind",
            f"{HOST}:{self.port}",
            *self.config.arguments(),
        ]
        handle = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log_text()}")
            healthz = f"{self.base_url}/healthz"
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(healthz, timeout=2) as response,  # noqa: S310 - our own 127.0.0.1 URL
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s:\n{self.log_text()}")

    def stop(self) -> None:
        stop_process_group(self.process)

    def drain(self, timeout: float = 120) -> None:
        """Wait until the requests wrk left behind at its deadline are answered: a sync worker answers
        this one only after the listen queue ahead of it, so the next run (and its CPU meter) starts
        on an idle server instead of paying for the previous run's backlog."""
        with contextlib.suppress(OSError, urllib.error.URLError):
            urllib.request.urlopen(f"{self.base_url}/healthz", timeout=timeout).close()  # noqa: S310 - 127.0.0.1

    def log_text(self, limit: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:] if self.log_path.exists() else ""


# --- wrk ------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one or more wrk runs measured (latencies in milliseconds, from the merged histogram)."""

    requests: int
    seconds: float
    errors: dict[str, int]
    histogram: dict[int, int]  # latency in microseconds -> requests
    connections: int = 0
    bodies_cycled: int = 0
    runs: int = 1
    per_run_rps: list[float] = field(default_factory=list)
    command: str = ""
    # CPU seconds the server spent on these requests, per group ("python": the gunicorn workers,
    # "postgres": their database backends), read from /proc (bench/cpu.py); empty when not metered.
    cpu: dict[str, float] = field(default_factory=dict)
    per_run_cpu_ms: list[float] = field(default_factory=list)  # each run's total, ms per request

    def cpu_ms_per_request(self, group: str | None = None) -> float | None:
        if not self.cpu or not self.requests:
            return None
        seconds = sum(self.cpu.values()) if group is None else self.cpu.get(group, 0.0)
        return 1000 * seconds / self.requests

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed_requests(self) -> int:
        return sum(self.errors.values())

    def percentile_ms(self, fraction: float) -> float:
        total = sum(self.histogram.values())
        if not total:
            return 0.0
        rank, seen = fraction * total, 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= rank:
                return value / 1000
        return max(self.histogram) / 1000

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(0.50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)

    @classmethod
    def merge(cls, results: list[LoadResult]) -> LoadResult:
        histogram: dict[int, int] = {}
        errors: dict[str, int] = {}
        for result in results:
            for value, count in result.histogram.items():
                histogram[value] = histogram.get(value, 0) + count
            for name, count in result.errors.items():
                errors[name] = errors.get(name, 0) + count
        return cls(
            requests=sum(r.requests for r in results),
            seconds=sum(r.seconds for r in results),
            errors=errors,
            histogram=histogram,
            connections=results[0].connections,
            bodies_cycled=sum(r.bodies_cycled for r in results),
            runs=len(results),
            per_run_rps=[round(r.requests_per_second, 1) for r in results],
            command=results[0].command,
            cpu={
                group: round(sum(r.cpu.get(group, 0.0) for r in results), 3)
                for group in sorted({group for r in results for group in r.cpu})
            },
            per_run_cpu_ms=[round(r.cpu_ms_per_request() or 0.0, 3) for r in results if r.cpu],
        )

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "runs": self.runs,
            "per_run_rps": self.per_run_rps,
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.percentile_ms(0.90), 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(max(self.histogram, default=0) / 1000, 2),
            "errors": self.errors,
            "connections": self.connections,
            "command": self.command,
            "cpu_seconds": self.cpu,
            "cpu_ms_per_request": {
                group: round(value, 3)
                for group, value in (
                    ("python", self.cpu_ms_per_request("python")),
                    ("postgres", self.cpu_ms_per_request("postgres")),
                    ("total", self.cpu_ms_per_request()),
                )
                if value is not None
            },
            "per_run_cpu_ms_per_request": self.per_run_cpu_ms,
        }


def parse_wrk_output(output: str) -> tuple[dict, dict[int, int]]:
    """The JSON line and the histogram line bench/lua/common.lua's done() prints."""
    data, histogram = None, {}
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON ") :])
        elif line.startswith("BENCH_HIST "):
            for pair in filter(None, line[len("BENCH_HIST ") :].split(",")):
                value, count = pair.split(":")
                histogram[int(value)] = histogram.get(int(value), 0) + int(count)
    if data is None:
        raise ValueError(f"wrk printed no BENCH_JSON line:\n{output[-2000:]}")
    return data, histogram


def run_wrk(
    url: str,
    *,
    script: str,
    seconds: int,
    connections: int,
    threads: int,
    headers: dict[str, str] | None = None,
    script_args: list[str] | None = None,
) -> LoadResult:
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, int(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_DIR / script),
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    data, histogram = parse_wrk_output(completed.stdout)
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        histogram=histogram,
        connections=connections,
        bodies_cycled=data.get("bodies_cycled", 0),
        command=" ".join(_redact(command)),
    )


def _redact(command: list[str]) -> list[str]:
    """Secrets and tokens in -H values stay out of the report."""
    redacted = []
    for part in command:
        lowered = part.lower()
        if lowered.startswith(("x-violet-app-secret:", "x-violet-token:", "cookie:")):
            part = part.split(":", 1)[0] + ": <redacted>"
        redacted.append(part)
    return redacted


# --- memory ---------------------------------------------------------------------------------------


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields start after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    tree = _children_by_parent()
    found, stack = [], [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM: the most resident memory the process has had since it started."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class PeakMemory:
    """Samples VmHWM of every descendant of a process until stopped; a process's peak is the last
    value read before it exited (sampled every `interval` seconds)."""

    root_pid: int
    interval: float = 0.5
    peaks_kib: dict[int, int] = field(default_factory=dict)
    command_lines: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        for pid in [self.root_pid, *descendants(self.root_pid)]:
            peak = peak_rss_kib(pid)
            if peak is None:
                continue
            self.peaks_kib[pid] = max(peak, self.peaks_kib.get(pid, 0))
            if pid not in self.command_lines:
                self.command_lines[pid] = command_line(pid)

    def peak_mib(self, *, matching: str = "", exclude_root: bool = False) -> float | None:
        values = [
            kib
            for pid, kib in self.peaks_kib.items()
            if matching in self.command_lines.get(pid, "") and not (exclude_root and pid == self.root_pid)
        ]
        return round(max(values) / 1024, 1) if values else None

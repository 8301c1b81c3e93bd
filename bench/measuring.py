"""How the web benchmark measures: the plan (rows, rounds, seconds), the endpoints under load and their
alternating wrk runs, and in-process query counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.cpu import CpuMeter
from bench.tools import LoadResult, Server, log, run_wrk

CONNECTIONS = 16
WRK_THREADS = 2


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
                rounds=5,
                round_seconds=2,
                warmup_seconds=1,
                admin_seconds=5,
            )
        return cls(
            quick=False,
            api_refunds=100_000,
            admin_refunds=1_000_000,
            rounds=7,
            round_seconds=5,
            warmup_seconds=3,
            admin_seconds=15,
        )


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


def compare(
    server: Server,
    plan: Plan,
    targets: list[Target],
    *,
    rounds: int,
    seconds: int,
    cpu: dict[str, Callable[[], Iterable[int]]] | None = None,
) -> dict[str, LoadResult]:
    """A warm-up of each target, then `rounds` measured runs of each, alternating (ABBA...), so a
    neighbour's burst of load on this shared machine falls on both sides alike. Runs are merged:
    requests over total time, percentiles from the merged latency histogram; each run's requests/s
    is kept, so a ratio can be taken round by round (its median and spread). `cpu`: process groups
    (bench/cpu.py) whose CPU seconds each measured run records."""
    measured: dict[str, list[LoadResult]] = {target.name: [] for target in targets}

    def run(target: Target, label: str, duration: int) -> LoadResult:
        meter = CpuMeter(cpu).start() if cpu and label != "warm" else None
        result = _wrk(target, label, duration)
        if meter is not None:
            result.cpu = meter.stop()
        server.drain()
        return result

    def _wrk(target: Target, label: str, duration: int) -> LoadResult:
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
        cpu_ms = result.cpu_ms_per_request()
        log(
            f"{name}: {result.requests_per_second:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, errors {result.failed_requests}; runs {result.per_run_rps}"
            + (f"; CPU {cpu_ms:.2f} ms/request {result.cpu}" if cpu_ms is not None else "")
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

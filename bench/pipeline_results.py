"""The pipeline benchmark's results: throughput, latency and the theoretical limit from the database and
the sandbox's call log; its section of bench/report.md and bench/results/pipeline.json.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.tools import ROOT

BENCH_DIR = ROOT / "bench"
REPORT = BENCH_DIR / "report.md"
RESULTS = BENCH_DIR / "results" / "pipeline.json"
SECTION_START = "<!-- bench:pipeline:start -->"
SECTION_END = "<!-- bench:pipeline:end -->"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure(args, bag_ids: list[int], counts_before: dict, wall_seconds: float, *, started_at, cpu: dict) -> dict:
    """Throughput and latency from the first refund recorded to the last COMPLETED (recording is on the
    clock), the theoretical (slot) limit, and CPU per refund: the product's (workers, recording threads,
    their PostgreSQL sessions) apart from the out-of-process sandbox's, with the CPU limit they imply."""
    import os

    from refunds.models import Refund, RefundStatus
    from stripe_sandbox.models import SandboxEvent, SandboxRefund, SandboxRequest

    rows = list(Refund.objects.filter(bag_id__in=bag_ids).values_list("status", "date_created", "date_completed"))
    completed = [(created, done) for status, created, done in rows if status == RefundStatus.COMPLETED and done]
    latencies = [(done - created).total_seconds() for created, done in completed]
    span = max(((done - started_at).total_seconds() for _created, done in completed), default=0.0)
    calls = SandboxRequest.objects.count() - counts_before.get("calls", 0)
    calls_per_refund = calls / len(completed) if completed else 0.0
    throughput = len(completed) / span if span > 0 else 0.0
    latency_s = args.latency_ms / 1000
    slots = args.concurrency * args.processes
    limit = slots / (calls_per_refund * latency_s) if calls_per_refund and latency_s else None
    count = len(completed) or 1
    product_seconds = (
        cpu.get("workers_python", 0.0) + cpu.get("recording_python", 0.0) + cpu.get("product_postgres", 0.0)
    )
    sandbox_seconds = cpu.get("sandbox_python", 0.0) + cpu.get("sandbox_postgres", 0.0)
    product_ms = 1000 * product_seconds / count
    sandbox_ms = 1000 * sandbox_seconds / count if args.sandbox == "http" else None
    cores = os.cpu_count() or 1
    return {
        "refunds": args.refunds,
        "completed": len(completed),
        "not_completed": len(rows) - len(completed),
        "left_processing": sum(1 for status, _c, _d in rows if status == RefundStatus.PROCESSING),
        "stripe_refunds_created": SandboxRefund.objects.count() - counts_before.get("stripe_refunds", 0),
        "refunds_per_second": round(throughput, 2),
        "span_seconds": round(span, 2),
        "wall_seconds": round(wall_seconds, 2),
        "latency_p50_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p99_seconds": round(percentile(latencies, 0.99), 3) if latencies else None,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "slots": slots,
        "sandbox": args.sandbox,
        "stripe_latency_ms": args.latency_ms,
        "stripe_calls": calls,
        "stripe_events_emitted": SandboxEvent.objects.count() - counts_before.get("events", 0),
        "calls_per_refund": round(calls_per_refund, 2),
        "theoretical_limit_per_second": round(limit, 2) if limit else None,
        "ratio_to_limit": round(throughput / limit, 3) if limit else None,
        "cpu_seconds": cpu,
        "product_cpu_ms_per_refund": round(product_ms, 2),
        "product_python_cpu_ms_per_refund": round(
            1000 * (cpu.get("workers_python", 0.0) + cpu.get("recording_python", 0.0)) / count, 2
        ),
        "product_postgres_cpu_ms_per_refund": round(1000 * cpu.get("product_postgres", 0.0) / count, 2),
        "sandbox_cpu_ms_per_refund": round(sandbox_ms, 2) if sandbox_ms is not None else None,
        "cores": cores,
        # What the CPU alone allows on this machine: cores / CPU per refund, the product's alone and
        # with the sandbox (which shares the cores here; real Stripe would not).
        "cpu_limit_per_second": round(1000 * cores / product_ms, 1) if product_ms else None,
        "cpu_limit_with_sandbox_per_second": round(1000 * cores / (product_ms + (sandbox_ms or 0)), 1)
        if product_ms
        else None,
    }


def render_section(results: dict, command: str) -> str:
    r = results
    limit = f"{r['theoretical_limit_per_second']}/s" if r["theoretical_limit_per_second"] else "n/a (no latency)"
    ratio = f"{r['ratio_to_limit']:.0%}" if r["ratio_to_limit"] is not None else "n/a"
    sandbox = (
        "its own process (stripe_sandbox.http_server, the SDK over HTTP on 127.0.0.1)"
        if r["sandbox"] == "http"
        else "in-process (the SDK's transport inside the workers: its CPU is counted as the product's)"
    )
    sandbox_cpu = r["sandbox_cpu_ms_per_refund"]
    rows = [
        (
            "refunds/s (first recorded -> last COMPLETED)",
            f"{r['refunds_per_second']}",
            f"{r['completed']} refunds recorded by {r['recorders']} threads (enqueued on commit) in "
            f"{r['record_seconds']} s; the last COMPLETED {r['span_seconds']} s after the first was recorded",
        ),
        ("p50 recorded -> completed", f"{r['latency_p50_seconds']} s", "includes queueing behind earlier refunds"),
        ("p99 recorded -> completed", f"{r['latency_p99_seconds']} s", ""),
        (
            "worker pool / slots",
            f"{r['processes']} x {r['pool']} {r['concurrency']} = {r['slots']} slots",
            "worker processes x pool size; acks_late, prefetch 1",
        ),
        (
            "Stripe sandbox",
            sandbox,
            f"{r['stripe_events_emitted']} events emitted, "
            + (
                "not delivered (no endpoint: their ingest is in neither CPU number)"
                if r["sandbox"] == "http"
                else "ingested in-process by the workers"
            ),
        ),
        ("Stripe latency (simulated)", f"{r['stripe_latency_ms']} ms per call", "the sandbox sleeps before answering"),
        ("Stripe calls per refund", f"{r['calls_per_refund']}", "merchant reversal, channel reversal, shopper refund"),
        ("slot limit", limit, "slots / (calls per refund x latency)"),
        ("ratio to the slot limit", ratio, "below 100%: our own wall time per refund, or the CPU limit below"),
        (
            "product CPU per refund",
            f"{r['product_cpu_ms_per_refund']} ms",
            f"Python {r['product_python_cpu_ms_per_refund']} ms (workers + recording threads) + PostgreSQL "
            f"{r['product_postgres_cpu_ms_per_refund']} ms (their backends); /proc utime+stime",
        ),
        (
            "sandbox CPU per refund",
            f"{sandbox_cpu} ms" if sandbox_cpu is not None else "inside the product's",
            "its server process + its PostgreSQL backends (application_name violet-stripe-sandbox)",
        ),
        (
            "CPU limit",
            f"{r['cpu_limit_per_second']}/s (with the sandbox: {r['cpu_limit_with_sandbox_per_second']}/s)",
            f"{r['cores']} cores / CPU per refund",
        ),
        ("left PROCESSING", f"{r['left_processing']}", "must be 0"),
        ("not completed", f"{r['not_completed']}", "must be 0"),
        ("Stripe refunds created", f"{r['stripe_refunds_created']}", "must equal the refunds: exactly once"),
    ]
    lines = [
        SECTION_START,
        "## Refund pipeline (bench/pipeline.py)",
        "",
        f"Run {r['finished_at']} on {r['machine']} (1-minute load average {r['load_average_at_start']} at the "
        f"start; anything else running on the 2 cores lowers the numbers): `{command}`.",
        "Real Celery workers on Redis and PostgreSQL (throw-away database); the clock runs from the first "
        "refund recorded to the last COMPLETED.",
        "",
        "| metric | value | notes |",
        "| --- | --- | --- |",
        *[f"| {metric} | {value} | {notes} |" for metric, value, notes in rows],
        "",
        SECTION_END,
    ]
    return "\n".join(lines)


def write_outputs(results: dict, command: str, path: Path = RESULTS) -> None:
    """The JSON at `path`; the section of bench/report.md only for the main run (the default path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if path.resolve() != RESULTS.resolve():
        return
    section = render_section(results, command)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n\nWritten by `make bench`.\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.write_text(text)

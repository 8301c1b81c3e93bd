"""The pipeline benchmark's results: throughput, latency and the theoretical limit from the database and
the sandbox's call log; its section of bench/report.md and bench/results/pipeline.json.
"""

from __future__ import annotations

import json
import statistics

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


def measure(args, bag_ids: list[int], calls_before: int, wall_seconds: float, *, enqueued_at) -> dict:
    from refunds.models import Refund, RefundStatus
    from stripe_sandbox.models import SandboxRefund, SandboxRequest

    rows = list(Refund.objects.filter(bag_id__in=bag_ids).values_list("status", "date_created", "date_completed"))
    completed = [done for status, _created, done in rows if status == RefundStatus.COMPLETED and done]
    # From the moment every refund was handed to the workers to each one's completion.
    latencies = [(done - enqueued_at).total_seconds() for done in completed]
    span = max(latencies) if latencies else 0.0
    calls = SandboxRequest.objects.count() - calls_before
    calls_per_refund = calls / len(completed) if completed else 0.0
    throughput = len(completed) / span if span > 0 else 0.0
    latency_s = args.latency_ms / 1000
    slots = args.concurrency * args.processes
    limit = slots / (calls_per_refund * latency_s) if calls_per_refund and latency_s else None
    return {
        "refunds": args.refunds,
        "completed": len(completed),
        "not_completed": len(rows) - len(completed),
        "stripe_refunds_created": SandboxRefund.objects.count(),
        "refunds_per_second": round(throughput, 2),
        "span_seconds": round(span, 2),
        "wall_seconds": round(wall_seconds, 2),
        "latency_p50_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p99_seconds": round(percentile(latencies, 0.99), 3) if latencies else None,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "processes": args.processes,
        "stripe_latency_ms": args.latency_ms,
        "stripe_calls": calls,
        "calls_per_refund": round(calls_per_refund, 2),
        "theoretical_limit_per_second": round(limit, 2) if limit else None,
        "ratio_to_limit": round(throughput / limit, 3) if limit else None,
    }


def render_section(results: dict, command: str) -> str:
    r = results
    limit = f"{r['theoretical_limit_per_second']}/s" if r["theoretical_limit_per_second"] else "n/a (no latency)"
    ratio = f"{r['ratio_to_limit']:.0%}" if r["ratio_to_limit"] is not None else "n/a"
    rows = [
        (
            "refunds/s (enqueued -> COMPLETED)",
            f"{r['refunds_per_second']}",
            f"{r['completed']} recorded refunds enqueued at once, the last COMPLETED after {r['span_seconds']} s",
        ),
        ("p50 enqueued -> completed", f"{r['latency_p50_seconds']} s", "includes queueing behind earlier refunds"),
        ("p99 enqueued -> completed", f"{r['latency_p99_seconds']} s", ""),
        (
            "refund_record calls/s, one process",
            r["record_per_second_one_process"],
            "recording measured apart (production records in many processes)",
        ),
        (
            "worker pool / concurrency",
            f"{r['processes']} x {r['pool']} / {r['concurrency']}",
            "worker processes x pool / slots each; acks_late, prefetch 1",
        ),
        ("Stripe latency (simulated)", f"{r['stripe_latency_ms']} ms per call", "sandbox sleeps before answering"),
        ("Stripe calls per refund", f"{r['calls_per_refund']}", "merchant reversal, channel reversal, shopper refund"),
        ("theoretical limit", limit, "processes x concurrency / (calls per refund x latency)"),
        (
            "ratio to the limit",
            ratio,
            "below 100% = CPU: engine and in-process Stripe emulator (~70 ms CPU per refund), PostgreSQL, Redis",
        ),
        ("not completed", f"{r['not_completed']}", "must be 0"),
        ("Stripe refunds created", f"{r['stripe_refunds_created']}", "must equal the refunds: exactly once"),
    ]
    lines = [
        SECTION_START,
        "## Refund pipeline (bench/pipeline.py)",
        "",
        f"Run {r['finished_at']} on {r['machine']} (1-minute load average {r['load_average_at_start']} at the "
        f"start; anything else running on the 2 cores lowers the numbers): `{command}`.",
        "Real Celery worker on Redis and PostgreSQL (throw-away database), Stripe sandbox as the gateway.",
        "",
        "| metric | value | notes |",
        "| --- | --- | --- |",
        *[f"| {metric} | {value} | {notes} |" for metric, value, notes in rows],
        "",
        SECTION_END,
    ]
    return "\n".join(lines)


def write_outputs(results: dict, command: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    section = render_section(results, command)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n\nWritten by `make bench`.\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.write_text(text)

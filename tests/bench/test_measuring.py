"""The benchmark's own arithmetic: wrk output, merged percentiles, peak memory, the report's verdicts."""

import os

from bench import report
from bench.measuring import Plan
from bench.tools import LoadResult, PeakMemory, _redact, parse_wrk_output

WRK_STDOUT = """Running 5s test @ http://127.0.0.1:8000/bench/plain
  2 threads and 16 connections
BENCH_JSON {"requests": 300, "duration_us": 3000000, "bytes": 1, "p50_us": 2000, "p90_us": 3000, \
"p99_us": 9000, "p999_us": 9000, "max_us": 9000, "mean_us": 2.0, "errors": {"connect": 0, "read": 0, \
"write": 0, "status": 2, "timeout": 0}, "bodies_cycled": 1}
BENCH_HIST 1000:100,2000:100,3000:97,9000:3
"""


def test_wrk_output_gives_counts_errors_and_the_whole_histogram():
    data, histogram = parse_wrk_output(WRK_STDOUT)
    assert data["requests"] == 300
    assert data["errors"]["status"] == 2
    assert histogram == {1000: 100, 2000: 100, 3000: 97, 9000: 3}


def _result(requests, seconds, histogram, status_errors=0):
    return LoadResult(
        requests=requests,
        seconds=seconds,
        errors={"connect": 0, "read": 0, "write": 0, "status": status_errors, "timeout": 0},
        histogram=histogram,
        connections=16,
    )


def test_merged_runs_give_throughput_over_total_time_and_percentiles_of_all_requests():
    fast = _result(100, 1.0, {1000: 100})
    slow = _result(100, 3.0, {5000: 97, 50000: 3})
    merged = LoadResult.merge([fast, slow])
    assert merged.requests == 200
    assert merged.requests_per_second == 50.0
    assert merged.runs == 2
    # Half the requests took 1 ms: the median is 1 ms. Nearest rank: the 98th percentile is the
    # 196th of 200 requests (5 ms), the 99th the 198th (50 ms: only 197 took 5 ms or less).
    assert merged.p50_ms == 1.0
    assert merged.percentile_ms(0.98) == 5.0
    assert merged.p99_ms == 50.0
    assert merged.as_dict()["max_ms"] == 50.0


def test_errors_add_up_across_runs():
    merged = LoadResult.merge([_result(10, 1, {1000: 10}, status_errors=1), _result(10, 1, {1000: 10}, 2)])
    assert merged.failed_requests == 3


def test_secrets_never_reach_the_report():
    command = ["wrk", "-H", "X-Violet-App-Secret: s3cret", "-H", "X-Violet-Token: eyJ", "-H", "Cookie: sessionid=abc"]
    assert " ".join(_redact(command)) == (
        "wrk -H X-Violet-App-Secret: <redacted> -H X-Violet-Token: <redacted> -H Cookie: <redacted>"
    )


def test_peak_memory_reads_the_high_water_mark_of_a_process():
    with PeakMemory(os.getpid(), interval=0.05) as memory:
        ballast = bytearray(64 * 1024 * 1024)
        ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    assert memory.peak_mib() >= 64
    del ballast


def _results(**overrides):
    def load(rps, p50, p99, errors=0):
        return {
            "requests": int(rps * 20),
            "seconds": 20.0,
            "runs": 4,
            "requests_per_second": rps,
            "p50_ms": p50,
            "p90_ms": p99,
            "p99_ms": p99,
            "max_ms": p99,
            "errors": {"status": errors},
            "connections": 16,
            "command": "wrk",
        }

    results = {
        "mode": "full",
        "command": "python bench/run.py",
        "finished_at": "now",
        "elapsed_seconds": 1.0,
        "machine": {"cores": 2},
        "server": "gunicorn sync, 5 workers",
        "seed": {"api_refunds": 100_000, "admin_refunds": 1_000_000},
        "loads": {
            "plain": load(3000, 4, 12),
            "signed_insert": load(1000, 14, 25),
            "webhook": load(700, 20, 40),
            "parent_children": load(600, 25, 70),
            "api": load(300, 50, 120),
            "admin": {**load(10, 120, 200), "connections": 1},
        },
        "api_queries": {"by_sku_count": {1: 6, 10: 6, 50: 6}, "baseline": 2},
        "admin_queries": {"100003": 8, "1000003": 8},
        "admin_total_refunds": 1_000_003,
        "admin_needing_attention": 10_000,
        "memory": {"web_worker_peak_mib": 110.0, "celery_worker_peak_mib": 120.0},
        "pipeline": {
            "refunds_per_second": 120.0,
            "theoretical_limit_per_second": 213.3,
            "ratio_to_limit": 0.56,
            "not_completed": 0,
            "completed": 300,
            "refunds": 300,
            "pool": "threads",
            "concurrency": 64,
            "stripe_latency_ms": 100,
        },
    }
    results.update(overrides)
    return results


def _verdicts(document):
    return {row["key"]: row["met"] for row in document["metrics"]}


def test_targets_are_judged_on_ratios_and_limits():
    document = report.build(_results(), Plan.for_mode(quick=False))
    verdicts = _verdicts(document)
    assert verdicts["webhook_rps"] is True  # 700 / 1000 = 70% >= 60%
    assert verdicts["webhook_p99"] is True  # 40 ms < 100 ms
    assert verdicts["api_rps"] is False  # 300 / 600 = 50% < 60%
    assert verdicts["api_queries"] is True
    assert verdicts["pipeline_rps"] is True
    assert verdicts["admin_ms"] is True
    assert verdicts["admin_queries"] is True
    row = next(r for r in document["metrics"] if r["key"] == "api_rps")
    assert row["ratio"] == 0.5
    table = report.render_table(document)
    assert "| 50% |" in table and "**not met**" in table


def test_a_growing_query_count_a_failed_request_or_a_missing_pipeline_is_never_met():
    results = _results(
        api_queries={"by_sku_count": {1: 6, 10: 15, 50: 55}, "baseline": 2},
        admin_queries={"100003": 8, "1000003": 9},
        pipeline=None,
        pipeline_error="bench/pipeline.py did not finish in time",
    )
    results["loads"]["webhook"]["errors"] = {"status": 3}
    verdicts = _verdicts(report.build(results, Plan.for_mode(quick=False)))
    assert verdicts["api_queries"] is False
    assert verdicts["admin_queries"] is False
    assert verdicts["webhook_rps"] is False
    assert verdicts["pipeline_rps"] is False


def test_quick_mode_says_so_in_the_report():
    document = report.build(_results(mode="quick"), Plan.for_mode(quick=True))
    text = report.render(document, pipeline_section="")
    assert "QUICK mode: 10,000 refunds for the API (not 100,000)" in text
    assert "<!-- bench:summary:start -->" in text

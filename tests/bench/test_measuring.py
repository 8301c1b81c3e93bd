"""The benchmark's own arithmetic: wrk output, merged percentiles, peak memory, the report's verdicts."""

import os
import time

import pytest

from bench import report
from bench.cpu import CpuMeter, PostgresBackends, cpu_seconds, fixed
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
    def load(rps, p50, p99, errors=0, per_run=None, cpu_ms=None):
        return {
            "requests": int(rps * 20),
            "seconds": 20.0,
            "runs": 5,
            "per_run_rps": per_run or [rps] * 5,
            "cpu_ms_per_request": {"python": cpu_ms * 0.8, "postgres": cpu_ms * 0.2, "total": cpu_ms} if cpu_ms else {},
            "per_run_cpu_ms_per_request": [cpu_ms] * 5 if cpu_ms else [],
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
            "signed_insert": load(1000, 14, 25, per_run=[1000, 900, 1100, 1000, 1000], cpu_ms=1.6),
            # Rounds: 0.72, 0.80, 0.70, 0.60, 0.75 -> median 0.72 (the totals would say 0.70).
            "webhook": load(700, 20, 40, per_run=[720, 720, 770, 600, 750], cpu_ms=2.0),
            "parent_children": load(600, 25, 70, cpu_ms=3.0),
            "api": load(300, 50, 120, cpu_ms=6.0),
            "api_large": load(290, 52, 125, cpu_ms=6.3),
            "admin": {**load(10, 120, 200), "connections": 1},
        },
        "api_queries": {"by_sku_count": {1: 2, 10: 2, 50: 2}, "baseline": 2, "at_admin_size": 2},
        "attention_counts": {
            "queries": 7,
            "failed_before": 10_000,
            "failed_after": 20_000,
            "ms_before": 10.0,
            "ms_after": 11.0,
            "time_ratio": 1.1,
        },
        "admin_queries": {"100003": 8, "1000003": 8},
        "admin_total_refunds": 1_000_003,
        "admin_needing_attention": 10_000,
        "memory": {"web_worker_peak_mib": 110.0, "celery_worker_peak_mib": 120.0},
        "pipeline": {
            "refunds_per_second": 60.0,
            "theoretical_limit_per_second": 106.7,
            "ratio_to_limit": 0.56,
            "not_completed": 0,
            "left_processing": 0,
            "completed": 300,
            "refunds": 300,
            "pool": "threads",
            "processes": 2,
            "concurrency": 16,
            "slots": 32,
            "sandbox": "http",
            "stripe_latency_ms": 100,
            "product_cpu_ms_per_refund": 18.0,
            "sandbox_cpu_ms_per_refund": 40.0,
            "cpu_limit_per_second": 111.1,
        },
        "pipeline_slots": {"processes": 2, "concurrency": 64, "left_processing": 0, "not_completed": 0},
    }
    results.update(overrides)
    return results


def _verdicts(document):
    return {row["key"]: row["met"] for row in document["metrics"]}


def test_targets_are_judged_on_ratios_and_limits():
    document = report.build(_results(), Plan.for_mode(quick=False))
    verdicts = _verdicts(document)
    assert verdicts["webhook_rps"] is True  # median of the rounds 72% >= 70%
    assert verdicts["webhook_p99"] is True  # 40 ms < 100 ms
    assert verdicts["api_rps"] is False  # 300 / 600 = 50% < 80%
    assert verdicts["api_queries"] is True  # 2 at every SKU count and table size
    assert verdicts["api_size"] is True  # 6.3 / 6.0 ms per request
    assert verdicts["pipeline_rps"] is True  # 60/s, sandbox out of process at 100 ms
    assert verdicts["pipeline_cpu"] is True  # 18 ms <= 20 ms
    assert verdicts["pipeline_slots"] is True
    assert verdicts["admin_ms"] is True
    assert verdicts["admin_queries"] is True
    assert verdicts["admin_attention"] is True  # 1.1 x the time for 2 x the failed
    row = next(r for r in document["metrics"] if r["key"] == "api_rps")
    assert row["ratio"] == 0.5
    table = report.render_table(document)
    assert "| 50% (50%-50%) |" in table and "**not met**" in table


def test_a_ratio_is_the_median_of_its_rounds_with_its_spread():
    document = report.build(_results(), Plan.for_mode(quick=False))
    row = next(r for r in document["metrics"] if r["key"] == "webhook_rps")
    assert row["ratio"] == 0.72
    assert row["ratio_spread"] == {"median": 0.72, "min": 0.6, "max": 0.8, "rounds": 5}
    assert "| 72% (60%-80%) |" in report.render_table(document)
    cpu = next(r for r in document["metrics"] if r["key"] == "webhook_cpu")
    assert (cpu["product"], cpu["baseline"], cpu["ratio"]) == (2.0, 1.6, 0.8)  # baseline CPU / ours


def test_fewer_rounds_than_the_minimum_meet_no_ratio_target():
    results = _results()
    for name in ("webhook", "signed_insert"):
        results["loads"][name]["per_run_rps"] = results["loads"][name]["per_run_rps"][:4]
    assert _verdicts(report.build(results, Plan.for_mode(quick=False)))["webhook_rps"] is False


def test_pipeline_targets_need_the_sandbox_out_of_process_and_every_refund_final():
    results = _results()
    results["pipeline"]["sandbox"] = "in-process"
    results["pipeline_slots"]["left_processing"] = 191
    verdicts = _verdicts(report.build(results, Plan.for_mode(quick=False)))
    assert verdicts["pipeline_rps"] is False
    assert verdicts["pipeline_cpu"] is False
    assert verdicts["pipeline_slots"] is False


def test_linear_attention_counts_or_growing_cpu_per_request_with_size_are_not_met():
    results = _results()
    results["attention_counts"]["time_ratio"] = 1.95
    results["loads"]["api_large"]["cpu_ms_per_request"]["total"] = 9.0
    verdicts = _verdicts(report.build(results, Plan.for_mode(quick=False)))
    assert verdicts["admin_attention"] is False
    assert verdicts["api_size"] is False


def test_a_growing_query_count_a_failed_request_or_a_missing_pipeline_is_never_met():
    results = _results(
        api_queries={"by_sku_count": {1: 2, 10: 15, 50: 55}, "baseline": 2},
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


def test_cpu_meter_counts_the_cpu_a_process_spends():
    meter = CpuMeter({"me": fixed([os.getpid()])}).start()
    started = time.process_time()
    while time.process_time() - started < 0.3:  # burn 0.3 s of CPU, however long it takes
        sum(range(1000))
    spent = meter.stop()["me"]
    assert spent >= 0.2
    assert cpu_seconds(os.getpid()) >= spent
    assert cpu_seconds(2**22 + 1) is None  # no such process


def test_merged_runs_keep_each_runs_cpu_per_request():
    first, second = _result(100, 1.0, {1000: 100}), _result(100, 1.0, {1000: 100})
    first.cpu, second.cpu = {"python": 0.2, "postgres": 0.1}, {"python": 0.4, "postgres": 0.1}
    merged = LoadResult.merge([first, second]).as_dict()
    assert merged["cpu_seconds"] == {"postgres": 0.2, "python": 0.6}
    assert merged["cpu_ms_per_request"] == {"python": 3.0, "postgres": 1.0, "total": 4.0}
    assert merged["per_run_cpu_ms_per_request"] == [3.0, 5.0]


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_backends_are_found_by_database_and_application_name():
    from django.conf import settings
    from django.db import connection

    database = settings.DATABASES["default"]
    admin_url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/postgres"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        ours = cursor.fetchone()[0]
    everyone = PostgresBackends(admin_url, database["NAME"])
    named = PostgresBackends(admin_url, database["NAME"], application="violet-stripe-sandbox")
    others = PostgresBackends(admin_url, database["NAME"], other_than="violet-stripe-sandbox")
    try:
        assert ours in everyone()
        assert ours in others()
        assert ours not in named()
    finally:
        for backends in (everyone, named, others):
            backends.close()


@pytest.mark.postgres
@pytest.mark.django_db
def test_pipeline_results_put_recording_on_the_clock_and_the_sandbox_cpu_apart():
    import argparse
    import datetime as dt

    from django.utils import timezone

    from bench.pipeline_results import measure
    from refunds.models import Refund, RefundStatus
    from tests.factories import RefundFactory, SandboxRefundFactory, SandboxRequestFactory

    started_at = timezone.now() - dt.timedelta(seconds=10)
    done = [
        RefundFactory(status=RefundStatus.COMPLETED, date_completed=started_at + dt.timedelta(seconds=seconds))
        for seconds in (4, 5, 8)
    ]
    stuck = RefundFactory(status=RefundStatus.PROCESSING)
    # Recorded one second after the clock started (the factory's date_created is now: set it).
    Refund.objects.filter(pk__in=[r.pk for r in done]).update(date_created=started_at + dt.timedelta(seconds=1))
    SandboxRequestFactory.create_batch(9)
    SandboxRefundFactory.create_batch(3)
    args = argparse.Namespace(
        refunds=4, latency_ms=100, concurrency=16, processes=2, pool="threads", sandbox="http", recorders=4
    )
    cpu = {
        "workers_python": 0.03,
        "recording_python": 0.006,
        "product_postgres": 0.024,
        "sandbox_python": 0.09,
        "sandbox_postgres": 0.03,
    }

    results = measure(args, [*(r.bag_id for r in done), stuck.bag_id], {}, 9.0, started_at=started_at, cpu=cpu)

    assert (results["completed"], results["not_completed"], results["left_processing"]) == (3, 1, 1)
    assert results["span_seconds"] == 8.0  # from the clock's start (before recording) to the last COMPLETED
    assert results["refunds_per_second"] == 0.38  # 3 / 8 s
    assert results["latency_p50_seconds"] == 4.0  # recorded -> completed: 3, 4, 7 s
    assert results["calls_per_refund"] == 3.0
    assert results["theoretical_limit_per_second"] == 106.67  # 32 slots / (3 calls x 0.1 s)
    assert results["product_cpu_ms_per_refund"] == 20.0  # (30 + 6 + 24 ms) / 3
    assert results["product_python_cpu_ms_per_refund"] == 12.0
    assert results["product_postgres_cpu_ms_per_refund"] == 8.0
    assert results["sandbox_cpu_ms_per_refund"] == 40.0  # (90 + 30 ms) / 3, apart from ours
    cores = results["cores"]
    assert results["cpu_limit_per_second"] == round(1000 * cores / 20.0, 1)
    assert results["cpu_limit_with_sandbox_per_second"] == round(1000 * cores / 60.0, 1)


def test_a_run_on_a_busy_machine_says_its_absolute_numbers_are_inflated():
    quiet = report.build(_results(machine={"cores": 2, "load_average_before": [0.4, 1, 1]}), Plan.for_mode(False))
    busy = report.build(
        _results(machine={"cores": 2, "load_average_before": [1.5, 1, 1], "load_average_after": [9.2, 8, 7]}),
        Plan.for_mode(quick=False),
    )
    assert quiet["busy_note"] == ""
    assert "BUSY machine: 1-minute load average 1.5 -> 9.2 on 2 cores" in report.render(busy, pipeline_section="")

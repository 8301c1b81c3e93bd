"""bench/report.md and bench/report.json from one run's results: each metric beside its baseline,
the ratio, the target and whether it was met. A missing measurement is reported as such (never met).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT_MD = ROOT / "bench" / "report.md"
REPORT_JSON = ROOT / "bench" / "report.json"
PIPELINE_START = "<!-- bench:pipeline:start -->"
PIPELINE_END = "<!-- bench:pipeline:end -->"

WEBHOOK_RATIO_TARGET = 0.70
WEBHOOK_P99_TARGET_MS = 100
API_RATIO_TARGET = 0.80
API_QUERIES_MAX = 2
# "Flat in table size": CPU per request with requests spread over the admin's table (1M) at most this
# many times the same endpoint's over the API's table (100k).
API_SIZE_GROWTH_MAX = 1.25
PIPELINE_TARGET_PER_SECOND = 50
PIPELINE_TARGET_LATENCY_MS = 100
PIPELINE_CPU_TARGET_MS = 20
ADMIN_TARGET_MS = 300
# "Attention counts not linear in the failed count": twice the failed refunds, at most this many
# times the time (linear would be about 2).
ATTENTION_GROWTH_MAX = 1.5
MIN_ROUNDS = 5
FULL_API_REFUNDS = 100_000
FULL_ADMIN_REFUNDS = 1_000_000


def _ratio(product, baseline):
    if product is None or not baseline:
        return None
    return product / baseline


def round_ratios(product: dict, baseline: dict) -> list[float]:
    """Product / baseline requests/s round by round (each pair ran back to back, alternating)."""
    pairs = zip(product.get("per_run_rps", []), baseline.get("per_run_rps", []), strict=False)
    return [p / b for p, b in pairs if b]


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "rounds": len(values),
    }


def _row(key, metric, *, product, baseline=None, ratio=None, target, met, unit="", notes="", ratio_spread=None):
    return {
        "key": key,
        "metric": metric,
        "unit": unit,
        "product": product,
        "baseline": baseline,
        "ratio": round(ratio, 3) if isinstance(ratio, float) else ratio,
        "ratio_spread": ratio_spread,
        "target": target,
        "met": met,
        "notes": notes,
    }


def _cpu_text(load: dict) -> str:
    cpu = load.get("cpu_ms_per_request") or {}
    if "total" not in cpu:
        return "not measured"
    return f"{cpu['total']:.2f} ms (Python {cpu.get('python', 0):.2f} + PostgreSQL {cpu.get('postgres', 0):.2f})"


def _cpu_rows(key: str, label: str, loads: dict, product: str, baseline: str) -> list[dict]:
    """CPU per request of an endpoint and its baseline; ratio = baseline's CPU / product's, round by
    round (the share of the baseline's speed the product would reach on CPU alone)."""
    if product not in loads or baseline not in loads:
        return []
    ours, theirs = loads[product], loads[baseline]
    ours_ms = (ours.get("cpu_ms_per_request") or {}).get("total")
    theirs_ms = (theirs.get("cpu_ms_per_request") or {}).get("total")
    per_round = [
        b / p
        for p, b in zip(
            ours.get("per_run_cpu_ms_per_request", []), theirs.get("per_run_cpu_ms_per_request", []), strict=False
        )
        if p
    ]
    return [
        _row(
            f"{key}_cpu",
            f"{label}: server CPU per request, in-process (gunicorn workers + their PostgreSQL backends)",
            unit="ms",
            product=ours_ms,
            baseline=theirs_ms,
            ratio=(spread(per_round) or {}).get("median") if per_round else _ratio(theirs_ms, ours_ms),
            ratio_spread=spread(per_round),
            target="reported (ratio = baseline CPU / product CPU)",
            met=None,
            notes=f"product {_cpu_text(ours)}; baseline {_cpu_text(theirs)}; /proc utime+stime over the measured runs",
        )
    ]


def _ratio_row(key, metric, loads, product, baseline, *, target_ratio, target, notes):
    ratios = round_ratios(loads.get(product, {}), loads.get(baseline, {}))
    ratio_spread = spread(ratios)
    rps = loads.get(product, {}).get("requests_per_second")
    base = loads.get(baseline, {}).get("requests_per_second")
    ratio = ratio_spread["median"] if ratio_spread else _ratio(rps, base)
    clean = product in loads and sum(loads[product]["errors"].values()) == 0
    enough = ratio_spread is not None and ratio_spread["rounds"] >= MIN_ROUNDS
    return _row(
        key,
        metric,
        unit="req/s",
        product=rps,
        baseline=base,
        ratio=ratio,
        ratio_spread=ratio_spread,
        target=target,
        met=bool(ratio is not None and ratio >= target_ratio and clean and enough),
        notes=notes,
    )


def build(results: dict, plan) -> dict:
    loads = results.get("loads", {})
    rows = []

    def latency(name, percentile):
        return loads.get(name, {}).get(f"{percentile}_ms")

    def clean(name):
        return name in loads and sum(loads[name]["errors"].values()) == 0

    # Webhook ingest
    rows.append(
        _ratio_row(
            "webhook_rps",
            "Webhook ingest: signed Shopify refunds/create, requests/s (16 connections)",
            loads,
            "webhook",
            "signed_insert",
            target_ratio=WEBHOOK_RATIO_TARGET,
            target=f">= {WEBHOOK_RATIO_TARGET:.0%} of the signed-insert baseline (median of >= {MIN_ROUNDS} rounds)",
            notes="baseline: HMAC-SHA256 of the body + one row inserted in a transaction",
        )
    )
    p99 = latency("webhook", "p99")
    rows.append(
        _row(
            "webhook_p99",
            "Webhook ingest: p99 latency (16 connections)",
            unit="ms",
            product=p99,
            baseline=latency("signed_insert", "p99"),
            ratio=_ratio(p99, latency("signed_insert", "p99")),
            target=f"< {WEBHOOK_P99_TARGET_MS} ms",
            met=bool(p99 is not None and p99 < WEBHOOK_P99_TARGET_MS and clean("webhook")),
            notes=f"p50 {latency('webhook', 'p50')} ms (baseline {latency('signed_insert', 'p50')} ms)",
        )
    )
    rows += _cpu_rows("webhook", "Webhook ingest", loads, "webhook", "signed_insert")
    # Channel API
    seed = results.get("seed", {})
    rows.append(
        _ratio_row(
            "api_rps",
            f"Channel API: GET /v1/orders/{{id}}/refunds/{{id}}, requests/s ({seed.get('api_refunds', 0):,} refunds)",
            loads,
            "api",
            "parent_children",
            target_ratio=API_RATIO_TARGET,
            target=f">= {API_RATIO_TARGET:.0%} of the one-row-plus-children baseline (median of >= {MIN_ROUNDS} "
            "rounds)",
            notes=f"p50 {latency('api', 'p50')} ms, p99 {latency('api', 'p99')} ms "
            f"(baseline {latency('parent_children', 'p50')} / {latency('parent_children', 'p99')} ms)",
        )
    )
    rows += _cpu_rows("api", "Channel API", loads, "api", "parent_children")
    api_queries = results.get("api_queries", {})
    by_skus = api_queries.get("by_sku_count", {})
    counts = [*by_skus.values(), *([api_queries["at_admin_size"]] if "at_admin_size" in api_queries else [])]
    rows.append(
        _row(
            "api_queries",
            "Channel API: queries per request for a refund of "
            + " / ".join(f"{n}" for n in by_skus)
            + " SKUs"
            + (" / at the admin's table size" if "at_admin_size" in api_queries else ""),
            unit="queries",
            product=" / ".join(str(q) for q in counts) if counts else None,
            baseline=api_queries.get("baseline"),
            target=f"<= {API_QUERIES_MAX}, the same for every SKU count and table size",
            met=bool(counts) and len(set(counts)) == 1 and max(counts) <= API_QUERIES_MAX,
            notes="counted in-process (CaptureQueriesContext), auth included",
        )
    )
    small_cpu = (loads.get("api", {}).get("cpu_ms_per_request") or {}).get("total")
    large_cpu = (loads.get("api_large", {}).get("cpu_ms_per_request") or {}).get("total")
    growth = _ratio(large_cpu, small_cpu)
    rows.append(
        _row(
            "api_size",
            f"Channel API: CPU per request over {results.get('admin_total_refunds') or 0:,} refunds vs "
            f"{seed.get('api_refunds', 0):,}",
            unit="ms",
            product=large_cpu,
            baseline=small_cpu,
            ratio=growth,
            target=f"flat: at most {API_SIZE_GROWTH_MAX:.2f} x",
            met=bool(growth is not None and growth <= API_SIZE_GROWTH_MAX and clean("api_large")),
            notes=f"requests spread over the grown table, {loads.get('api_large', {}).get('requests_per_second')} "
            "req/s; baseline column = the same endpoint over the API's table",
        )
    )
    rows += _pipeline_rows(results)
    # Admin
    admin_queries = results.get("admin_queries", {})
    total = results.get("admin_total_refunds")
    p50 = latency("admin", "p50")
    rows.append(
        _row(
            "admin_ms",
            f"Admin: failed-refunds changelist, server time p50 ({total or 0:,} refunds, "
            f"{results.get('admin_needing_attention', 0):,} failed)",
            unit="ms",
            product=p50,
            target=f"< {ADMIN_TARGET_MS} ms",
            met=bool(p50 is not None and p50 < ADMIN_TARGET_MS and clean("admin")),
            notes=f"p99 {latency('admin', 'p99')} ms; one connection, logged-in session; "
            f"{results.get('admin_rows_on_page', 0)} rows on the page",
        )
    )
    counts = list(admin_queries.values())
    rows.append(
        _row(
            "admin_queries",
            "Admin: failed-refunds changelist, queries per page",
            unit="queries",
            product=" / ".join(str(c) for c in counts) if counts else None,
            target="fixed (the same at every table size)",
            met=len(counts) >= 2 and len(set(counts)) == 1,
            notes="at " + " / ".join(f"{int(size):,}" for size in admin_queries) + " refunds",
        )
    )
    attention = results.get("attention_counts") or {}
    rows.append(
        _row(
            "admin_attention",
            "Admin: triage counts (needs attention) when the failed refunds double",
            unit="ms",
            product=attention.get("ms_after"),
            baseline=attention.get("ms_before"),
            ratio=attention.get("time_ratio"),
            target=f"not linear: at most {ATTENTION_GROWTH_MAX} x the time for 2 x the failed refunds",
            met=bool(attention.get("time_ratio") is not None and attention["time_ratio"] <= ATTENTION_GROWTH_MAX),
            notes=(
                f"{attention.get('failed_before', 0):,} -> {attention.get('failed_after', 0):,} failed; "
                f"{attention.get('queries')} queries; median of 7 in-process calls each"
                if attention
                else "not measured"
            ),
        )
    )
    # Memory
    memory = results.get("memory", {})
    rows.append(
        _row(
            "web_rss",
            "Memory: peak RSS of a web (gunicorn) worker",
            unit="MiB",
            product=memory.get("web_worker_peak_mib"),
            target="reported",
            met=None,
            notes="VmHWM over every run above",
        )
    )
    rows.append(
        _row(
            "celery_rss",
            "Memory: peak RSS of the Celery worker",
            unit="MiB",
            product=memory.get("celery_worker_peak_mib"),
            target="reported",
            met=None,
            notes="VmHWM during the pipeline run",
        )
    )
    rows.append(
        _row(
            "plain_rps",
            "Reference: plain DRF view, requests/s",
            unit="req/s",
            product=None,
            baseline=loads.get("plain", {}).get("requests_per_second"),
            target="-",
            met=None,
            notes="the floor of the stack (routing, middleware, rendering)",
        )
    )
    return {
        "finished_at": results.get("finished_at"),
        "mode": results.get("mode"),
        "command": results.get("command"),
        "elapsed_seconds": results.get("elapsed_seconds"),
        "machine": results.get("machine"),
        "server": results.get("server"),
        "metrics": rows,
        "results": results,
        "quick_note": _quick_note(results, plan),
        "busy_note": busy_note(results),
    }


def _pipeline_rows(results: dict) -> list[dict]:
    pipeline = results.get("pipeline")
    if not pipeline:
        error = results.get("pipeline_error", "not run")
        return [
            _row(
                "pipeline_rps",
                "Pipeline: refunds/s recorded -> COMPLETED",
                unit="refunds/s",
                product=None,
                target=f">= {PIPELINE_TARGET_PER_SECOND} refunds/s",
                met=False,
                notes=error,
            ),
            _row(
                "pipeline_cpu",
                "Pipeline: product CPU per refund",
                unit="ms",
                product=None,
                target=f"<= {PIPELINE_CPU_TARGET_MS} ms",
                met=False,
                notes=error,
            ),
        ]
    per_second = pipeline.get("refunds_per_second")
    honest = pipeline.get("sandbox") == "http" and pipeline.get("stripe_latency_ms") == PIPELINE_TARGET_LATENCY_MS
    cpu_ms = pipeline.get("product_cpu_ms_per_refund")
    rows = [
        _row(
            "pipeline_rps",
            "Pipeline: refunds/s, first recorded -> last COMPLETED (real Celery workers, Stripe sandbox in its "
            f"own process at {pipeline.get('stripe_latency_ms')} ms/call)",
            unit="refunds/s",
            product=per_second,
            baseline=pipeline.get("theoretical_limit_per_second"),
            ratio=pipeline.get("ratio_to_limit"),
            target=f">= {PIPELINE_TARGET_PER_SECOND} refunds/s",
            met=bool(
                honest
                and per_second is not None
                and per_second >= PIPELINE_TARGET_PER_SECOND
                and pipeline.get("not_completed") == 0
            ),
            notes=f"bound by: slot limit {pipeline.get('theoretical_limit_per_second')}/s "
            f"({pipeline.get('processes', 1)} processes x {pipeline.get('pool')} {pipeline.get('concurrency')} "
            "= {slots} slots / (calls per refund x latency)); CPU limit {cpu}/s ({cores} cores / product CPU per "
            "refund), {cpu_all}/s with the sandbox on the same cores; {completed} of {refunds} completed".format(
                slots=pipeline.get("slots"),
                cpu=pipeline.get("cpu_limit_per_second"),
                cpu_all=pipeline.get("cpu_limit_with_sandbox_per_second"),
                cores=pipeline.get("cores"),
                completed=pipeline.get("completed"),
                refunds=pipeline.get("refunds"),
            ),
        ),
        _row(
            "pipeline_cpu",
            "Pipeline: product CPU per refund (workers + recording + their PostgreSQL backends; sandbox excluded)",
            unit="ms",
            product=cpu_ms,
            baseline=pipeline.get("sandbox_cpu_ms_per_refund"),
            target=f"<= {PIPELINE_CPU_TARGET_MS} ms",
            met=bool(honest and cpu_ms is not None and cpu_ms <= PIPELINE_CPU_TARGET_MS),
            notes=f"Python {pipeline.get('product_python_cpu_ms_per_refund')} ms + PostgreSQL "
            f"{pipeline.get('product_postgres_cpu_ms_per_refund')} ms; baseline column = the sandbox's own CPU "
            "per refund (its process + its backends), reported apart",
        ),
    ]
    slots_run = results.get("pipeline_slots")
    if slots_run:
        left = slots_run.get("left_processing")
        rows.append(
            _row(
                "pipeline_slots",
                f"Pipeline at {slots_run.get('processes')} x {slots_run.get('concurrency')} slots: refunds left "
                "PROCESSING",
                unit="refunds",
                product=left,
                target="0",
                met=left == 0 and slots_run.get("not_completed") == 0,
                notes=f"{slots_run.get('completed')} of {slots_run.get('refunds')} completed at "
                f"{slots_run.get('refunds_per_second')} refunds/s (slot limit "
                f"{slots_run.get('theoretical_limit_per_second')}/s); product CPU "
                f"{slots_run.get('product_cpu_ms_per_refund')} ms per refund",
            )
        )
    else:
        rows.append(
            _row(
                "pipeline_slots",
                "Pipeline at 2 x 64 slots: refunds left PROCESSING",
                unit="refunds",
                product=None,
                target="0",
                met=False,
                notes=results.get("pipeline_slots_error", "not run"),
            )
        )
    return rows


def busy_note(results: dict) -> str:
    """A run on a machine busier than its cores: absolute numbers (req/s, CPU ms) are inflated."""
    machine = results.get("machine") or {}
    cores = machine.get("cores") or 1
    loads = [*(machine.get("load_average_before") or [])[:1], *(machine.get("load_average_after") or [])[:1]]
    if not loads or max(loads) <= cores:
        return ""
    return (
        f"BUSY machine: 1-minute load average {' -> '.join(f'{value:.1f}' for value in loads)} on {cores} cores. "
        "Other work shared the CPU: absolute requests/s and CPU ms (per request, per refund) are inflated by "
        "contention and do not judge the absolute targets; the round-by-round ratios compare like with like."
    )


def _quick_note(results: dict, plan) -> str:
    if not plan.quick:
        return ""
    return (
        f"QUICK mode: {plan.api_refunds:,} refunds for the API (not {FULL_API_REFUNDS:,}) and "
        f"{plan.admin_refunds:,} for the admin (not {FULL_ADMIN_REFUNDS:,}), {plan.seconds} s load runs and "
        "a smaller pipeline run. For development only: the targets are judged on the full run (`make bench`)."
    )


def _loads(values) -> str:
    return " / ".join(f"{value:.2f}" for value in values) if values else "unknown"


def _fmt(value, unit=""):
    if value is None:
        return "not measured"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit and unit not in ("queries",) else text


def _met(value) -> str:
    if value is None:
        return "-"
    return "met" if value else "**not met**"


def render_table(document: dict) -> str:
    lines = ["| metric | product | baseline | ratio | target | met? |", "| --- | --- | --- | --- | --- | --- |"]
    for row in document["metrics"]:
        ratio = row["ratio"]
        ratio_text = f"{ratio:.0%}" if isinstance(ratio, float) else "-"
        if row.get("ratio_spread"):
            ratio_text += f" ({row['ratio_spread']['min']:.0%}-{row['ratio_spread']['max']:.0%})"
        baseline = _fmt(row["baseline"], row["unit"]) if row["baseline"] is not None else "-"
        product = _fmt(row["product"], row["unit"]) if row["product"] is not None or row["met"] is not None else "-"
        lines.append(
            f"| {row['metric']} | {product} | {baseline} | {ratio_text} | {row['target']} | {_met(row['met'])} |"
        )
    return "\n".join(lines)


def _render_runs(results: dict) -> str:
    names = {
        "plain": "baseline: plain DRF view",
        "signed_insert": "baseline: HMAC check + insert one row",
        "webhook": "product: POST /webhooks/shopify/<id>/",
        "parent_children": "baseline: one row + three child rows",
        "api": "product: GET /v1/orders/{id}/refunds/{id}",
        "api_large": "product: GET /v1/orders/{id}/refunds/{id} over the admin's grown table",
        "admin": "product: admin failed-refunds changelist",
    }
    lines = [
        "| run | connections | runs x s | requests | requests/s | each run, req/s | CPU ms/request (Python + "
        "PostgreSQL) | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in results.get("loads", {}).items():
        lines.append(
            f"| {names.get(name, name)} | {run['connections']} | {run['runs']} x {run['seconds'] / run['runs']:.0f} "
            f"| {run['requests']:,} "
            f"| {run['requests_per_second']:,.1f} | {' / '.join(f'{r:,.0f}' for r in run.get('per_run_rps', []))} "
            f"| {_cpu_text(run)} "
            f"| {run['p50_ms']} | {run['p90_ms']} | {run['p99_ms']} "
            f"| {run['max_ms']} | {sum(run['errors'].values())} |"
        )
    return "\n".join(lines)


def _webhook_check(check: dict) -> str:
    if not check:
        return ""
    stored_all = check["events_stored_all"] == check["queued_messages"]
    measured = check["events_stored_measured"] >= check["answered"]
    baseline = check["baseline_rows_measured"] >= check["baseline_answered"]
    verdict = "checked" if stored_all and measured and baseline else "**CHECK FAILED**"
    return (
        f"Every answered request was stored and every stored event enqueued exactly once ({verdict}): "
        f"{check['answered']:,} answered in the measured runs, {check['events_stored_measured']:,} events stored "
        f"(wrk does not count answers that arrive after its deadline); {check['events_stored_all']:,} events in all "
        f"with the warm-up, {check['queued_messages']:,} messages queued. Baseline: {check['baseline_answered']:,} "
        f"answered, {check['baseline_rows_measured']:,} rows."
    )


def _notes_on_rows(document: dict) -> str:
    return "\n".join(f"- {row['metric']}: {row['notes']}" for row in document["metrics"] if row["notes"])


def render(document: dict, pipeline_section: str) -> str:
    results = document["results"]
    machine = document.get("machine") or {}
    check = results.get("webhook_check", {})
    admin_view = results.get("admin_view", {})
    seed = results.get("seed", {})
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`{document['command']}`) on {document['finished_at']}, "
        f"{document['mode']} mode, {document['elapsed_seconds']} s in all. Machine: {machine.get('cores')} cores, "
        f"Python {machine.get('python')}, PostgreSQL {machine.get('postgresql')}, {machine.get('wrk')}; "
        f"load average (1/5/15 min) {_loads(machine.get('load_average_before'))} before the run, "
        f"{_loads(machine.get('load_average_after'))} after.",
        "",
    ]
    if document["quick_note"]:
        parts += [f"> {document['quick_note']}", ""]
    if document.get("busy_note"):
        parts += [f"> {document['busy_note']}", ""]
    parts += [
        "<!-- bench:summary:start -->",
        render_table(document),
        "<!-- bench:summary:end -->",
        "",
        "Ratio = product / baseline, both measured in this run on this machine, one after the other.",
        "",
        "## How it was measured",
        "",
        f"- One server for the product and the baselines: {document.get('server')}, bound to 127.0.0.1, "
        "settings `bench.settings_bench` (the product's settings with DEBUG off, plus the baselines' "
        f"URLs under /bench/), CONN_MAX_AGE {results.get('conn_max_age')}.",
        "- Load: wrk, 2 threads, 16 connections (the admin: 1). Each endpoint gets a discarded warm-up, then "
        "measured runs alternating with its baseline's (A B B A ...), so a burst of other work on the machine "
        "falls on both; requests/s over the runs' total time, percentiles from wrk's merged latency "
        "histograms (bench/lua/common.lua). A ratio is taken round by round (product run / the baseline's run "
        "beside it): the table shows its median and, in brackets, its min-max over the rounds; a target is "
        f"judged on the median of at least {MIN_ROUNDS} rounds.",
        "- CPU, in-process: utime+stime from /proc/<pid>/stat of the gunicorn workers and of the PostgreSQL "
        "backends of the bench database (pg_stat_activity), before and after each measured run, divided by the "
        "requests answered. Redis's CPU is not counted. Contention on a busy machine inflates CPU time too "
        "(caches, scheduling): product and baseline share the rounds, so their CPU ratio compares; absolute "
        "CPU numbers (ms per refund) only on a quiet machine.",
        "- Pipeline: bench/pipeline.py with the Stripe sandbox in its own process (python -m "
        "stripe_sandbox.http_server, the SDK over HTTP); the product's CPU (Celery workers, the threads recording "
        "the refunds, their PostgreSQL backends) and the sandbox's (its process, its backends, told apart by "
        "application_name) are metered apart; the clock starts before the first refund is recorded. A second "
        "run at 2 x 64 slots checks that no refund is left PROCESSING.",
        "- Webhook: signed Shopify `refunds/create` deliveries (the captured fixture, "
        f"{check.get('body_bytes')} bytes, a new refund id per body), each request with a new "
        "X-Shopify-Webhook-Id, to the real endpoint "
        f"(verify, store, enqueue on commit). {_webhook_check(check)}",
        f"- Channel API: {seed.get('api_refunds', 0):,} refunds (each with its order, bag, two lines, two "
        "transfers, reversals and shopper refund), requests spread over all of them in random order, with the "
        "real X-Violet-App-Id / X-Violet-App-Secret / X-Violet-Token headers. The baseline reads one row "
        "and its three children from tables of the same size.",
        f"- Admin: `{admin_view.get('path', '-')}` ({admin_view.get('label', '-')}), logged-in superuser "
        f"session, one connection; data grown to {seed.get('admin_refunds', 0):,} refunds in "
        f"{seed.get('admin_seconds', '-')} s with set-based SQL (bench/seed.py), then VACUUM ANALYZE.",
        "- Memory: VmHWM (peak resident set) of each gunicorn worker and of the Celery worker, sampled "
        "from /proc every 0.5 s.",
        "",
        "Notes per metric:",
        "",
        _notes_on_rows(document),
        "",
        "## Load runs",
        "",
        _render_runs(results),
        "",
    ]
    if pipeline_section:
        parts += [pipeline_section, ""]
    elif results.get("pipeline_error"):
        parts += ["## Refund pipeline", "", f"Not measured: {results['pipeline_error']}.", ""]
    return "\n".join(parts)


def existing_pipeline_section() -> str:
    """bench/pipeline.py writes its own section into report.md; it is kept, verbatim."""
    if not REPORT_MD.exists():
        return ""
    text = REPORT_MD.read_text()
    if PIPELINE_START not in text or PIPELINE_END not in text:
        return ""
    return PIPELINE_START + text.split(PIPELINE_START, 1)[1].split(PIPELINE_END, 1)[0] + PIPELINE_END


def write(document: dict) -> None:
    pipeline_section = existing_pipeline_section() if document["results"].get("pipeline") else ""
    REPORT_MD.write_text(render(document, pipeline_section))
    REPORT_JSON.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")

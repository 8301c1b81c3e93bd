"""bench/report.md and bench/report.json from one run's results: each metric beside its baseline,
the ratio, the target and whether it was met. A missing measurement is reported as such (never met).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT_MD = ROOT / "bench" / "report.md"
REPORT_JSON = ROOT / "bench" / "report.json"
PIPELINE_START = "<!-- bench:pipeline:start -->"
PIPELINE_END = "<!-- bench:pipeline:end -->"

WEBHOOK_RATIO_TARGET = 0.60
WEBHOOK_P99_TARGET_MS = 100
API_RATIO_TARGET = 0.60
PIPELINE_TARGET_PER_SECOND = 100
ADMIN_TARGET_MS = 300
FULL_API_REFUNDS = 100_000
FULL_ADMIN_REFUNDS = 1_000_000


def _ratio(product, baseline):
    if product is None or not baseline:
        return None
    return product / baseline


def _row(key, metric, *, product, baseline=None, ratio=None, target, met, unit="", notes=""):
    return {
        "key": key,
        "metric": metric,
        "unit": unit,
        "product": product,
        "baseline": baseline,
        "ratio": round(ratio, 3) if isinstance(ratio, float) else ratio,
        "target": target,
        "met": met,
        "notes": notes,
    }


def build(results: dict, plan) -> dict:
    loads = results.get("loads", {})
    rows = []

    def rps(name):
        return loads.get(name, {}).get("requests_per_second")

    def latency(name, percentile):
        return loads.get(name, {}).get(f"{percentile}_ms")

    def clean(name):
        return name in loads and sum(loads[name]["errors"].values()) == 0

    # Webhook ingest
    ratio = _ratio(rps("webhook"), rps("signed_insert"))
    rows.append(
        _row(
            "webhook_rps",
            "Webhook ingest: signed Shopify refunds/create, requests/s (16 connections)",
            unit="req/s",
            product=rps("webhook"),
            baseline=rps("signed_insert"),
            ratio=ratio,
            target=f">= {WEBHOOK_RATIO_TARGET:.0%} of the signed-insert baseline",
            met=bool(ratio is not None and ratio >= WEBHOOK_RATIO_TARGET and clean("webhook")),
            notes="baseline: HMAC-SHA256 of the body + one row inserted in a transaction",
        )
    )
    p99 = latency("webhook", "p99")
    rows.append(
        _row(
            "webhook_p99",
            "Webhook ingest: p99 latency",
            unit="ms",
            product=p99,
            baseline=latency("signed_insert", "p99"),
            ratio=_ratio(p99, latency("signed_insert", "p99")),
            target=f"< {WEBHOOK_P99_TARGET_MS} ms",
            met=bool(p99 is not None and p99 < WEBHOOK_P99_TARGET_MS and clean("webhook")),
            notes=f"p50 {latency('webhook', 'p50')} ms (baseline {latency('signed_insert', 'p50')} ms)",
        )
    )
    # Channel API
    ratio = _ratio(rps("api"), rps("parent_children"))
    seed = results.get("seed", {})
    rows.append(
        _row(
            "api_rps",
            f"Channel API: GET /v1/orders/{{id}}/refunds/{{id}}, requests/s ({seed.get('api_refunds', 0):,} refunds)",
            unit="req/s",
            product=rps("api"),
            baseline=rps("parent_children"),
            ratio=ratio,
            target=f">= {API_RATIO_TARGET:.0%} of the one-row-plus-children baseline",
            met=bool(ratio is not None and ratio >= API_RATIO_TARGET and clean("api")),
            notes=f"p50 {latency('api', 'p50')} ms, p99 {latency('api', 'p99')} ms "
            f"(baseline {latency('parent_children', 'p50')} / {latency('parent_children', 'p99')} ms)",
        )
    )
    api_queries = results.get("api_queries", {})
    by_skus = api_queries.get("by_sku_count", {})
    rows.append(
        _row(
            "api_queries",
            "Channel API: queries per request for a refund of " + " / ".join(f"{n}" for n in by_skus) + " SKUs",
            unit="queries",
            product=" / ".join(str(q) for q in by_skus.values()) if by_skus else None,
            baseline=api_queries.get("baseline"),
            target="independent of the number of SKUs",
            met=bool(by_skus) and len(set(by_skus.values())) == 1,
            notes="counted in-process (CaptureQueriesContext), auth included",
        )
    )
    # Pipeline
    pipeline = results.get("pipeline")
    if pipeline:
        per_second = pipeline.get("refunds_per_second")
        rows.append(
            _row(
                "pipeline_rps",
                "Pipeline: refunds/s enqueued -> COMPLETED (real Celery workers, Stripe sandbox latency "
                f"{pipeline.get('stripe_latency_ms')} ms/call)",
                unit="refunds/s",
                product=per_second,
                baseline=pipeline.get("theoretical_limit_per_second"),
                ratio=pipeline.get("ratio_to_limit"),
                target=f">= {PIPELINE_TARGET_PER_SECOND} refunds/s",
                met=bool(
                    per_second is not None
                    and per_second >= PIPELINE_TARGET_PER_SECOND
                    and pipeline.get("not_completed") == 0
                ),
                notes=f"{pipeline.get('processes', 1)} worker processes x {pipeline.get('pool')} "
                f"{pipeline.get('concurrency')}; baseline = theoretical limit "
                "(processes x concurrency / (calls per refund x latency)); "
                f"{pipeline.get('completed')} of {pipeline.get('refunds')} completed",
            )
        )
    else:
        rows.append(
            _row(
                "pipeline_rps",
                "Pipeline: refunds/s recorded -> COMPLETED",
                unit="refunds/s",
                product=None,
                target=f">= {PIPELINE_TARGET_PER_SECOND} refunds/s",
                met=False,
                notes=results.get("pipeline_error", "not run"),
            )
        )
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
            baseline=rps("plain"),
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
    }


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
        "admin": "product: admin failed-refunds changelist",
    }
    lines = [
        "| run | connections | runs x s | requests | requests/s | each run, req/s | p50 ms | p90 ms | p99 ms "
        "| max ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in results.get("loads", {}).items():
        lines.append(
            f"| {names.get(name, name)} | {run['connections']} | {run['runs']} x {run['seconds'] / run['runs']:.0f} "
            f"| {run['requests']:,} "
            f"| {run['requests_per_second']:,.1f} | {' / '.join(f'{r:,.0f}' for r in run.get('per_run_rps', []))} "
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
        "histograms (bench/lua/common.lua).",
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

"""The web part of `make bench`: seeds the database, counts queries, starts gunicorn and drives it with wrk
(webhook, channel API and admin, each against its baseline), sampling the web workers' peak memory.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from functools import partial
from pathlib import Path

from bench.cpu import PostgresBackends, process_tree
from bench.measuring import Plan, Target, compare, count_queries, failed_refunds_query, rows_on_page
from bench.services import redis_client
from bench.tools import LoadResult, PeakMemory, Server, ServerConfig, log
from bench.world import SHOP_DOMAIN, build_world, delivery_body_size, write_deliveries, write_paths

SKU_COUNTS = (1, 10, 50)


def run_web(args, plan: Plan, database_url: str, work_dir: Path, results: dict) -> None:
    """Everything measured through gunicorn: webhook, channel API, admin."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.utils import timezone

    from bench import seed
    from bench.baseline_views import BASELINE_TABLES_SQL, EVENT_ID_HEADER, SIGNATURE_HEADER, body_signature
    from platforms.adapters.shopify import HMAC_HEADER, TOPIC_HEADER, WEBHOOK_ID_HEADER, shopify_hmac
    from platforms.models import InboundEvent
    from refunds.api.auth import APP_ID_HEADER, APP_SECRET_HEADER, TOKEN_HEADER

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_TABLES_SQL)
    world = build_world()
    now = timezone.now()
    # Numbers up to admin_refunds are the admin's million; the SKU-count probes come after them.
    origin = seed.origin_for(plan.admin_refunds, now=now)
    seed.seed_refunds(first=1, last=plan.api_refunds, app_id=world.app_id, merchant_id=world.merchant_id, origin=origin)
    probes = {}
    for offset, skus in enumerate(SKU_COUNTS, start=1):
        number = plan.admin_refunds + offset
        seed.seed_refunds(
            first=number, last=number, app_id=world.app_id, merchant_id=world.merchant_id, origin=origin, skus=skus
        )
        probes[skus] = number
    seed.seed_baseline_parents(count=plan.api_refunds)
    seed.analyze()
    results["seed"] = {"api_refunds": plan.api_refunds, "seconds": round(time.monotonic() - started, 1)}
    log(f"database ready: {plan.api_refunds} refunds with their orders, bags, lines and money moves")

    public_id = world.webhook_public_id
    product_deliveries = write_deliveries(work_dir, "shopify", secret=world.webhook_secret, signer=shopify_hmac)
    baseline_deliveries = write_deliveries(
        work_dir, "baseline", secret=os.environ["BENCH_BASELINE_HMAC_SECRET"], signer=body_signature
    )
    ids = list(range(1, plan.api_refunds + 1))
    random.Random(9).shuffle(ids)
    api_paths = write_paths(work_dir / "api-paths", "/v1/orders/{id}/refunds/{id}", ids)
    parent_paths = write_paths(work_dir / "parent-paths", "/bench/parents/{id}", ids)
    api_headers = {APP_ID_HEADER: str(world.app_id), APP_SECRET_HEADER: world.app_secret, TOKEN_HEADER: world.token}

    client = Client()
    client.force_login(get_user_model().objects.get(pk=world.operator_id))
    session_cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    triage_query, triage_label = failed_refunds_query()
    admin_path = f"/admin/refunds/refund/?{triage_query}"

    # Query counts (in-process, same database): API by SKU count, admin at the API's scale.
    api_queries = {}
    for skus, number in probes.items():
        queries, status, body = count_queries(client, f"/v1/orders/{number}/refunds/{number}", **api_headers)
        if status != 200 or len(json.loads(body)["skus"]) != skus:
            raise RuntimeError(f"API probe with {skus} SKUs answered {status}: {body[:300]!r}")
        api_queries[skus] = queries
    parent_queries, status, _ = count_queries(client, "/bench/parents/1")
    results["api_queries"] = {"by_sku_count": api_queries, "baseline": parent_queries}
    admin_queries_small, status, body = count_queries(client, admin_path)
    if status != 200:
        raise RuntimeError(f"admin changelist answered {status}")
    results["admin_queries"] = {str(plan.api_refunds + len(SKU_COUNTS)): admin_queries_small}

    server_config = ServerConfig(workers=args.workers, worker_class=args.worker_class, threads=args.threads)
    server = Server(server_config, dict(os.environ), work_dir / "gunicorn.log")
    results["server"] = server_config.describe()
    server.start()
    log(f"{server_config.describe()} on {server.base_url}")
    # CPU per request, in-process: the gunicorn workers (not the arbiter) and their PostgreSQL backends.
    backends = PostgresBackends(args.postgres_url, settings.DATABASES["default"]["NAME"])
    cpu_groups = {"python": process_tree(server.process.pid), "postgres": backends}
    try:
        with PeakMemory(server.process.pid) as web_memory:
            loads: dict[str, LoadResult] = {}
            measure = partial(compare, server, plan, rounds=plan.rounds, seconds=plan.round_seconds, cpu=cpu_groups)
            loads.update(measure([Target("plain", "/bench/plain", "plain.lua")]))
            if "webhook" not in args.skip:
                loads.update(
                    measure(
                        [
                            Target(
                                "signed_insert",
                                "/bench/signed-insert",
                                "signed_post.lua",
                                script_args=lambda label: [
                                    baseline_deliveries,
                                    SIGNATURE_HEADER,
                                    EVENT_ID_HEADER,
                                    label,
                                ],
                            ),
                            Target(
                                "webhook",
                                f"/webhooks/shopify/{public_id}/",
                                "signed_post.lua",
                                headers={
                                    TOPIC_HEADER: "refunds/create",
                                    "X-Shopify-Shop-Domain": SHOP_DOMAIN,
                                    "X-Shopify-API-Version": "2026-01",
                                },
                                script_args=lambda label: [product_deliveries, HMAC_HEADER, WEBHOOK_ID_HEADER, label],
                            ),
                        ]
                    )
                )
                # wrk counts the answers received before its deadline; the database and the queue
                # hold everything the server accepted (warm-up included): one event, one message each.
                results["webhook_check"] = {
                    "answered": loads["webhook"].requests,
                    "events_stored_measured": InboundEvent.objects.filter(event_id__startswith="run").count(),
                    "events_stored_all": InboundEvent.objects.count(),
                    "queued_messages": int(redis_client(args.redis_url).llen(os.environ["BENCH_CELERY_QUEUE"])),
                    "baseline_answered": loads["signed_insert"].requests,
                    "baseline_rows_measured": _count(
                        "SELECT count(*) FROM bench_signed_event WHERE event_id LIKE 'run%%'"
                    ),
                    "body_bytes": delivery_body_size(),
                }
            if "api" not in args.skip:
                loads.update(
                    measure(
                        [
                            Target(
                                "parent_children", "/bench/parents/1", "paths.lua", script_args=lambda _: [parent_paths]
                            ),
                            Target(
                                "api",
                                "/v1/orders/1/refunds/1",
                                "paths.lua",
                                headers=api_headers,
                                script_args=lambda _: [api_paths],
                            ),
                        ]
                    )
                )
            if "admin" not in args.skip:
                grown = time.monotonic()
                if plan.admin_refunds > plan.api_refunds:
                    log(f"growing the database to {plan.admin_refunds:,} refunds for the admin")
                    seed.seed_refunds(
                        first=plan.api_refunds + 1,
                        last=plan.admin_refunds,
                        app_id=world.app_id,
                        merchant_id=world.merchant_id,
                        origin=origin,
                    )
                    seed.analyze()
                results["seed"]["admin_refunds"] = plan.admin_refunds
                results["seed"]["admin_seconds"] = round(time.monotonic() - grown, 1)
                queries, status, body = count_queries(client, admin_path)
                if status != 200:
                    raise RuntimeError(f"admin changelist answered {status}")
                total = plan.admin_refunds + len(SKU_COUNTS)
                results["admin_queries"][str(total)] = queries
                results["admin_rows_on_page"] = rows_on_page(body)
                results["admin_needing_attention"] = _count(
                    "SELECT count(*) FROM refunds_refund WHERE status IN ('FAILED', 'PARTIALLY_COMPLETED')"
                )
                results["admin_total_refunds"] = _count("SELECT count(*) FROM refunds_refund")
                results["admin_view"] = {"path": admin_path, "label": triage_label}
                loads.update(
                    compare(
                        server,
                        plan,
                        [Target("admin", admin_path, "plain.lua", headers={"Cookie": session_cookie}, connections=1)],
                        rounds=1,
                        seconds=plan.admin_seconds,
                        cpu=cpu_groups,
                    )
                )
                if "api" not in args.skip:
                    # The same endpoint with requests spread over every refund of the grown table:
                    # its CPU per request beside the small table's says whether it is flat in size.
                    large_ids = random.Random(11).sample(range(1, plan.admin_refunds + 1), k=plan.api_refunds)
                    large_paths = write_paths(work_dir / "api-paths-large", "/v1/orders/{id}/refunds/{id}", large_ids)
                    probe = large_ids[0]
                    queries, status, _ = count_queries(client, f"/v1/orders/{probe}/refunds/{probe}", **api_headers)
                    results["api_queries"]["at_admin_size"] = queries
                    loads.update(
                        measure(
                            [
                                Target(
                                    "api_large",
                                    "/v1/orders/1/refunds/1",
                                    "paths.lua",
                                    headers=api_headers,
                                    script_args=lambda _: [large_paths],
                                )
                            ]
                        )
                    )
                results["attention_counts"] = attention_count_scaling(failed_now=results["admin_needing_attention"])
            results["loads"] = {name: result.as_dict() for name, result in loads.items()}
        results["memory"] = {"web_worker_peak_mib": web_memory.peak_mib(exclude_root=True)}
    finally:
        server.stop()
        backends.close()
        connections.close_all()


def _timed_ms(work, repeats: int = 7) -> float:
    """Median wall time of `work()` in-process, in ms (the database does the work: one caller, no load)."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def attention_count_scaling(*, failed_now: int) -> dict:
    """The admin's triage counts ("needs attention") timed at the seeded failed count, then again with
    as many more refunds turned FAILED (their status only: these counts read nothing else). Linear
    in the failed count would take about twice as long; the ratio is the report's number."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from refunds.admin.selectors import triage_counts

    with CaptureQueriesContext(connection) as captured:
        triage_counts()
    before_ms = _timed_ms(triage_counts)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE refunds_refund SET status = 'FAILED' WHERE id IN "
            "(SELECT id FROM refunds_refund WHERE status = 'COMPLETED' ORDER BY id LIMIT %s)",
            [max(failed_now, 1)],
        )
        cursor.execute("ANALYZE refunds_refund")
    failed_after = _count("SELECT count(*) FROM refunds_refund WHERE status IN ('FAILED', 'PARTIALLY_COMPLETED')")
    after_ms = _timed_ms(triage_counts)
    return {
        "queries": len(captured.captured_queries),
        "failed_before": failed_now,
        "failed_after": failed_after,
        "ms_before": before_ms,
        "ms_after": after_ms,
        "time_ratio": round(after_ms / before_ms, 3) if before_ms else None,
        "failed_ratio": round(failed_after / failed_now, 3) if failed_now else None,
    }


def _count(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])

"""The web part of `make bench`: seeds the database, counts queries, starts gunicorn and drives it with wrk
(webhook, channel API and admin, each against its baseline), sampling the web workers' peak memory.
"""

from __future__ import annotations

import json
import os
import random
import time
from functools import partial
from pathlib import Path

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
    try:
        with PeakMemory(server.process.pid) as web_memory:
            loads: dict[str, LoadResult] = {}
            measure = partial(compare, server, plan, rounds=plan.rounds, seconds=plan.round_seconds)
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
                    )
                )
            results["loads"] = {name: result.as_dict() for name, result in loads.items()}
        results["memory"] = {"web_worker_peak_mib": web_memory.peak_mib(exclude_root=True)}
    finally:
        server.stop()
        connections.close_all()


def _count(sql: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])

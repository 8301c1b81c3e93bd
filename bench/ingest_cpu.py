"""CPU per webhook delivery, in-process (issue #20 item 2): the Shopify receiver against the
signed-insert baseline, Python (`time.process_time`) plus the PostgreSQL backend's CPU (read from
/proc for this connection's backend pid, so the database must run on this machine).

The product also runs as the two earlier ways of storing and publishing, swapped in for the
measurement only: the ORM `save()` in a savepoint instead of `row_insert_unless_conflict`, and
`apply_async` instead of `task_publish`. Blocks of each alternate with the baseline's, so load from
other work falls on every side; medians over the rounds are printed.

    DATABASE_URL=postgres://.../<a migrated throw-away database> REDIS_URL=redis://127.0.0.1:6379/<n> \\
        python bench/ingest_cpu.py [--rounds 5] [--block 200]

It adds a merchant, a connection and the baseline's table (bench_signed_event) to that database and
leaves the stored events there; its messages go to BENCH_CELERY_QUEUE (deleted at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_bench")
os.environ.setdefault("BENCH_CELERY_QUEUE", "violet-bench-ingest-cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=200, help="requests per block")
    args = parser.parse_args()

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.db import IntegrityError, connection, transaction
    from django.test import Client

    from bench.baseline_views import BASELINE_TABLES_SQL, EVENT_ID_HEADER, SIGNATURE_HEADER, body_signature
    from bench.world import SHOP_DOMAIN, SHOPIFY_FIXTURE
    from platforms import services
    from platforms.adapters.shopify import HMAC_HEADER, TOPIC_HEADER, WEBHOOK_ID_HEADER, shopify_hmac
    from platforms.models import Merchant, Platform, StoreConnection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_signed_event')")
        if cursor.fetchone()[0] is None:
            cursor.execute(BASELINE_TABLES_SQL)
    merchant = Merchant.objects.create(
        name="Ingest CPU",
        platform=Platform.SHOPIFY,
        store_url=f"https://{SHOP_DOMAIN}",
        currency="USD",
        stripe_account_id="acct_ingestcpu" + secrets.token_hex(4),
    )
    secret = "shpss_" + secrets.token_hex(16)
    store = StoreConnection.objects.create(
        merchant=merchant,
        webhook_secret=secret,
        credentials={"shop_domain": SHOP_DOMAIN, "access_token": "shpat_bench"},
        status=StoreConnection.Status.CONNECTED,
    )
    body = json.dumps({**json.loads(SHOPIFY_FIXTURE.read_text()), "id": 1}, separators=(",", ":")).encode()
    product_headers = {
        HMAC_HEADER: shopify_hmac(secret, body),
        TOPIC_HEADER: "refunds/create",
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-API-Version": "2026-01",
    }
    baseline_signature = body_signature(settings.BENCH_BASELINE_HMAC_SECRET, body)
    client = Client()
    url = f"/webhooks/shopify/{store.public_id}/"
    run = uuid.uuid4().hex[:8]
    sent = [0]

    def product() -> None:
        sent[0] += 1
        headers = {**product_headers, WEBHOOK_ID_HEADER: f"cpu-{run}-{sent[0]}"}
        response = client.post(url, body, content_type="application/json", headers=headers)
        assert response.status_code == 200, response.content

    def baseline() -> None:
        sent[0] += 1
        headers = {SIGNATURE_HEADER: baseline_signature, EVENT_ID_HEADER: f"cpu-{run}-{sent[0]}"}
        response = client.post("/bench/signed-insert", body, content_type="application/json", headers=headers)
        assert response.status_code == 200, response.content

    def orm_insert(obj, *, conflict_fields) -> bool:
        try:
            with transaction.atomic():
                obj.save(force_insert=True)
        except IntegrityError:
            return False
        return True

    def apply_async(task, *task_args) -> str:
        return task.apply_async(task_args).id

    insert, publish = services.row_insert_unless_conflict, services.task_publish
    variants = {
        "now": (insert, publish),
        "ORM insert": (orm_insert, publish),
        "apply_async": (insert, apply_async),
        "before": (orm_insert, apply_async),
    }

    def backend_cpu() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def block(request) -> tuple[float, float]:
        database, python = backend_cpu(), time.process_time()
        for _ in range(args.block):
            request()
        python, database = time.process_time() - python, backend_cpu() - database
        return python / args.block * 1000, database / args.block * 1000

    def use(name: str) -> None:
        services.row_insert_unless_conflict, services.task_publish = variants[name]

    for name in variants:
        use(name)
        for _ in range(50):
            product()
    for _ in range(50):
        baseline()
    blocks: dict[str, list[tuple[float, float]]] = {name: [] for name in ["baseline", *variants]}
    for _ in range(args.rounds):
        blocks["baseline"].append(block(baseline))
        for name in variants:
            use(name)
            blocks[name].append(block(product))
        blocks["baseline"].append(block(baseline))
    use("now")

    def total(name: str) -> tuple[float, float]:
        return statistics.median(b[0] for b in blocks[name]), statistics.median(b[1] for b in blocks[name])

    base_python, base_database = total("baseline")
    print(f"{'':12} {'python':>8} {'postgres':>9} {'total':>7}  baseline/this   (ms CPU per request)")
    for name in blocks:
        python, database = total(name)
        ratio = (base_python + base_database) / (python + database)
        print(f"{name:12} {python:8.3f} {database:9.3f} {python + database:7.3f}  {ratio:.2f}")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    print(f"load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds of {args.block} requests per block")


if __name__ == "__main__":
    main()

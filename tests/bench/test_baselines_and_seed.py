"""The baselines answer like the endpoints they stand for, and the seeded data is what the product
would have written: the channel API and the admin read it (PostgreSQL: the seed is set-based SQL)."""

import datetime as dt
import json

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench import seed
from bench.baseline_views import BASELINE_TABLES_SQL, EVENT_ID_HEADER, SIGNATURE_HEADER, body_signature
from bench.world import build_world
from payments.models import ShopperRefund, Transfer, TransferReversal
from refunds.models import Refund, RefundError, RefundSku, RefundStatus

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def baseline_tables(settings):
    settings.ROOT_URLCONF = "bench.baseline_urls"
    settings.BENCH_BASELINE_HMAC_SECRET = "baseline-secret"
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_TABLES_SQL)


def test_signed_insert_baseline_checks_the_signature_and_inserts_once(client, baseline_tables):
    body = json.dumps({"id": 1, "note": "x" * 2000}).encode()

    def post(signature, event_id="evt-1"):
        return client.post(
            "/bench/signed-insert",
            data=body,
            content_type="application/json",
            headers={SIGNATURE_HEADER: signature, EVENT_ID_HEADER: event_id},
        )

    assert post(body_signature("baseline-secret", body)).json() == {"status": "received"}
    assert post(body_signature("baseline-secret", body)).json() == {"status": "duplicate"}
    assert post(body_signature("wrong-secret", body)).status_code == 401
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, length(body) FROM bench_signed_event")
        assert cursor.fetchall() == [("evt-1", len(body))]


def test_parent_baseline_reads_one_row_and_its_three_children_in_two_queries(client, baseline_tables):
    seed.seed_baseline_parents(count=5)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/bench/parents/4")
    assert response.status_code == 200
    assert response.json()["id"] == 4
    assert [child["name"] for child in response.json()["children"]] == ["Child 1", "Child 2", "Child 3"]
    assert len(queries) == 2
    assert client.get("/bench/parents/99").status_code == 404


@pytest.fixture
def seeded_world(settings):
    settings.ROOT_URLCONF = "bench.baseline_urls"
    world = build_world()
    # The newest refund an hour old: refund 5 (PROCESSING) is then stuck, as the engine defines it.
    origin = seed.origin_for(300, now=timezone.now() - dt.timedelta(hours=1))
    seed.seed_refunds(first=1, last=300, app_id=world.app_id, merchant_id=world.merchant_id, origin=origin)
    seed.seed_refunds(first=301, last=301, app_id=world.app_id, merchant_id=world.merchant_id, origin=origin, skus=7)
    return world


def test_seeded_refunds_have_every_row_the_engine_writes(seeded_world):
    statuses = dict(Refund.objects.values_list("status").order_by().annotate(n=Count("id")))
    # 1 % need an operator (even hundreds FAILED, odd ones PARTIALLY_COMPLETED); number 5 is stuck.
    assert statuses == {
        RefundStatus.COMPLETED: 297,
        RefundStatus.FAILED: 1,
        RefundStatus.PARTIALLY_COMPLETED: 2,
        RefundStatus.PROCESSING: 1,
    }
    assert Refund.objects.get(pk=200).status == RefundStatus.FAILED
    assert RefundSku.objects.filter(refund_id=301).count() == 7
    assert Transfer.objects.count() == 2 * 301
    assert TransferReversal.objects.count() == 2 * 301
    assert ShopperRefund.objects.count() == 301
    assert RefundError.objects.count() == 3
    partial = Refund.objects.get(pk=100)
    channel = TransferReversal.objects.get(refund=partial, transfer__recipient="DEVELOPER")
    assert channel.status == TransferReversal.Status.FAILED
    assert channel.transfer.reversed_amount == 0
    assert partial.amount == partial.sub_total_amount + partial.shipping_amount + partial.tax_amount
    # New rows continue after the seeded ids.
    assert Refund.objects.order_by("-pk").values_list("pk", flat=True).first() == 301


def test_the_channel_api_reads_a_seeded_refund_with_the_real_headers(client, seeded_world):
    headers = {
        "X-Violet-App-Id": str(seeded_world.app_id),
        "X-Violet-App-Secret": seeded_world.app_secret,
        "X-Violet-Token": seeded_world.token,
    }
    response = client.get("/v1/orders/301/refunds/301", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == 301
    assert body["status"] == "COMPLETED"
    assert body["amount"] == 7 * 5000 + 500 + 800
    assert len(body["skus"]) == 7
    assert len(body["transfer_reversals"]) == 2
    assert client.get("/v1/orders/200/refunds/200", headers=headers).json()["errors"][0]["error_code"] == 3006


def test_the_admin_failed_view_lists_the_seeded_failures(client, seeded_world):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(pk=seeded_world.operator_id))
    response = client.get("/admin/refunds/refund/?triage=failed")
    assert response.status_code == 200
    ids = {int(value) for value in response.context["cl"].result_list.values_list("pk", flat=True)}
    assert ids == {5, 100, 200, 300}

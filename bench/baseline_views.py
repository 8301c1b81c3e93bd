"""The bare stack, for the benchmark's ratios: the least a Django + DRF + PostgreSQL view can do for
the same job as a product endpoint. Served only by bench.settings_bench, never by the product.

- `PlainView`: DRF returning a constant (the floor: routing, middleware, rendering);
- `ParentWithChildrenView`: one row plus its three child rows (the channel API's shape of work);
- `SignedInsertView`: an HMAC-SHA256 check of the raw body, then one row inserted in a transaction
  (the webhook receiver's shape of work).

The models are unmanaged: bench/run.py creates their tables with raw SQL (BASELINE_TABLES_SQL).
"""

import base64
import hashlib
import hmac

from django.conf import settings
from django.db import IntegrityError, models, transaction
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

SIGNATURE_HEADER = "X-Bench-Hmac-Sha256"
EVENT_ID_HEADER = "X-Bench-Event-Id"

BASELINE_TABLES_SQL = """
CREATE TABLE bench_parent (
    id bigint PRIMARY KEY,
    name varchar(200) NOT NULL,
    amount bigint NOT NULL,
    currency varchar(3) NOT NULL,
    date_created timestamptz NOT NULL
);
CREATE TABLE bench_child (
    id bigserial PRIMARY KEY,
    parent_id bigint NOT NULL REFERENCES bench_parent (id),
    name varchar(200) NOT NULL,
    quantity integer NOT NULL,
    amount bigint NOT NULL
);
CREATE INDEX bench_child_parent_id ON bench_child (parent_id);
CREATE TABLE bench_signed_event (
    id bigserial PRIMARY KEY,
    event_id varchar(255) NOT NULL UNIQUE,
    body text NOT NULL,
    date_created timestamptz NOT NULL
);
"""


class BenchParent(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    date_created = models.DateTimeField()

    class Meta:
        app_label = "bench"
        db_table = "bench_parent"
        managed = False

    def __str__(self):
        return self.name


class BenchChild(models.Model):
    parent = models.ForeignKey(BenchParent, on_delete=models.DO_NOTHING, related_name="children")
    name = models.CharField(max_length=200)
    quantity = models.IntegerField()
    amount = models.BigIntegerField()

    class Meta:
        app_label = "bench"
        db_table = "bench_child"
        managed = False
        ordering = ["id"]

    def __str__(self):
        return self.name


class BenchSignedEvent(models.Model):
    event_id = models.CharField(max_length=255, unique=True)
    body = models.TextField()
    date_created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "bench"
        db_table = "bench_signed_event"
        managed = False

    def __str__(self):
        return self.event_id


class BenchChildSerializer(serializers.ModelSerializer):
    class Meta:
        model = BenchChild
        fields = ["id", "name", "quantity", "amount"]


class BenchParentSerializer(serializers.ModelSerializer):
    children = BenchChildSerializer(many=True)

    class Meta:
        model = BenchParent
        fields = ["id", "name", "amount", "currency", "date_created", "children"]


class PlainView(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        return Response({"status": "ok"})


class ParentWithChildrenView(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request, parent_id: int):
        try:
            parent = BenchParent.objects.prefetch_related("children").get(pk=parent_id)
        except BenchParent.DoesNotExist:
            return Response({"error": "not found"}, status=404)
        return Response(BenchParentSerializer(parent).data)


def body_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class SignedInsertView(APIView):
    authentication_classes = []
    permission_classes = []

    def post(self, request):
        body = request.body
        expected = body_signature(settings.BENCH_BASELINE_HMAC_SECRET, body)
        if not hmac.compare_digest(expected.encode(), request.headers.get(SIGNATURE_HEADER, "").encode()):
            return Response({"error": "bad signature"}, status=401)
        event_id = request.headers.get(EVENT_ID_HEADER, "")
        if not event_id:
            return Response({"error": "missing event id"}, status=400)
        try:
            with transaction.atomic():
                BenchSignedEvent.objects.create(event_id=event_id, body=body.decode("utf-8"))
        except IntegrityError:
            return Response({"status": "duplicate"})
        return Response({"status": "received"})

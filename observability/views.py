"""GET /metrics: Prometheus text format. Who may read it: a bearer token (METRICS_TOKEN) or a client
address in METRICS_ALLOWED_NETWORKS; with neither configured nobody may (401, like any other refusal)."""

from __future__ import annotations

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from observability.collectors import DatabaseCollector
from violet_refunds.throttling import client_ip


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        presented = request.headers.get("Authorization", "")
        if hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            return True
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            address = ipaddress.ip_address(client_ip(request))
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(network, strict=False) for network in networks)
    return False


def _in_process_registry() -> CollectorRegistry:
    """Every process's counters and histograms when PROMETHEUS_MULTIPROC_DIR is shared (gunicorn
    workers, Celery pool children), otherwise this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse("metrics: bearer token or allowed network required\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    body = generate_latest(_in_process_registry()) + generate_latest(database)
    # generate_latest writes the classic text format (0.0.4), which every Prometheus reads.
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)

"""Prometheus metrics counted in-process (issue #18 item 5): request latency per view and Stripe calls
by outcome. What the database or Redis already knows (refunds by status, stuck refunds, inbound events,
deliveries, queue lengths, processing time) is read at scrape time instead (observability.collectors).

Several processes per machine (gunicorn workers, Celery pool children): set PROMETHEUS_MULTIPROC_DIR
(an empty directory, the same for every process of the machine, emptied at each deploy) and /metrics
adds up every process's values; without it each process reports its own.
"""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

HTTP_REQUEST_SECONDS = Histogram(
    "violet_http_request_duration_seconds",
    "Time to answer a request, by view (URL name), method and status class.",
    ["view", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STRIPE_CALLS = Counter(
    "violet_stripe_calls",
    "Stripe API calls by operation and outcome (ok, transient, permanent, idempotency_conflict).",
    ["operation", "outcome"],
)

UNRESOLVED_VIEW = "<unresolved>"


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNRESOLVED_VIEW
    # The URL's name (bounded), never the path (an id in every path would make a series per refund).
    return match.view_name or getattr(match, "route", None) or UNRESOLVED_VIEW


class RequestLatencyMiddleware:
    """Times every request that reaches the URL conf (the probes, served earlier, are left out)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        HTTP_REQUEST_SECONDS.labels(
            view=_view_name(request), method=request.method or "", status=f"{response.status_code // 100}xx"
        ).observe(time.perf_counter() - started)
        return response


def stripe_operation(method) -> str:
    """`refunds.create`-like name of an SDK method (`list_page` for a paging lambda)."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if owner is None or not name or name == "<lambda>":
        return "list_page"
    service = type(owner).__name__.removesuffix("Service")
    return f"{service}.{name}"

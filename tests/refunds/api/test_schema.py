"""The OpenAPI schema and docs, and a schemathesis run of the live API against its own schema."""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from notifications.models import WebhookEvent
from notifications.services import webhook_endpoint_register
from refunds.services import bag_mark_canceled
from tests.factories import RefundErrorFactory, RefundSkuFactory
from tests.refunds.api.conftest import channel_headers, place_order

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/v1/schema/?format=json"
EXPECTED_OPERATIONS = {
    ("/v1/login", "post"),
    ("/v1/auth/token", "get"),
    ("/v1/orders/{order_id}/refunds", "get"),
    ("/v1/orders/{order_id}/refunds/{refund_id}", "get"),
    ("/v1/orders/{order_id}/bags/{bag_id}/refunds", "get"),
    ("/v1/orders/{order_id}/bags/{bag_id}/refunds", "post"),
    ("/v1/orders/{order_id}/cancel", "post"),
    ("/v1/orders/{order_id}/bags/{bag_id}/cancel", "post"),
    ("/v1/events/webhooks", "get"),
    ("/v1/events/webhooks", "post"),
    ("/v1/events/webhooks/{webhook_id}", "get"),
    ("/v1/events/webhooks/{webhook_id}", "patch"),
    ("/v1/events/webhooks/{webhook_id}", "delete"),
    ("/v1/events/webhooks/{webhook_id}/test", "post"),
    ("/v1/events", "get"),
    ("/v1/events/{event_id}/resend", "post"),
}
# The merchant refund-notice API is in the same document, with its own bearer key (issue 19, item 5).
NOTICE_OPERATION = ("/portal/api/refund-notices", "post")


@pytest.fixture
def openapi(api_client) -> dict:
    response = api_client.get(SCHEMA_URL)
    assert response.status_code == 200
    return response.json()


def test_the_schema_lists_exactly_the_channel_api(openapi):
    operations = {(path, method) for path, item in openapi["paths"].items() for method in item}

    assert operations == EXPECTED_OPERATIONS | {NOTICE_OPERATION}
    assert openapi["openapi"].startswith("3.")


def test_every_refund_endpoint_requires_the_three_violet_headers(openapi):
    schemes = openapi["components"]["securitySchemes"]
    assert schemes.pop("MerchantApiKey")["scheme"] == "bearer"
    assert {name: (scheme["type"], scheme["in"], scheme["name"]) for name, scheme in schemes.items()} == {
        "VioletAppId": ("apiKey", "header", "X-Violet-App-Id"),
        "VioletAppSecret": ("apiKey", "header", "X-Violet-App-Secret"),
        "VioletToken": ("apiKey", "header", "X-Violet-Token"),
    }
    assert openapi["paths"][NOTICE_OPERATION[0]]["post"]["security"] == [{"MerchantApiKey": []}]
    all_three = [{"VioletAppId": [], "VioletAppSecret": [], "VioletToken": []}]
    for path, method in EXPECTED_OPERATIONS - {("/v1/login", "post")}:
        assert openapi["paths"][path][method]["security"] == all_three, path
    assert openapi["paths"]["/v1/login"]["post"]["security"] == [{"VioletAppId": [], "VioletAppSecret": []}]


def test_nullable_refund_fields_are_declared_nullable(openapi):
    properties = openapi["components"]["schemas"]["Refund"]["properties"]
    nullable = {name for name, schema in properties.items() if schema.get("nullable")}

    assert {"shipping", "tax_amount"} <= nullable
    assert {"id", "order_id", "amount", "status", "skus", "errors", "date_created"}.isdisjoint(nullable)
    # Seed 004 types them as integers and a string: 0 / "" until known, never null (issue 19, item 5).
    assert {
        "external_id",
        "merchant_transfer_reversal_amount_usd",
        "developer_transfer_reversal_amount_usd",
    }.isdisjoint(nullable)


def test_the_docs_page_serves_swagger_ui_for_the_schema(api_client):
    response = api_client.get("/v1/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "/v1/schema/" in page
    assert "cdn" not in page  # assets come from drf-spectacular-sidecar, not an external CDN


# --- schemathesis -------------------------------------------------------------------------------


@pytest.fixture
def wsgi_app():
    """The project's real WSGI handler, minus the per-request connection recycling.

    Django closes old database connections at the start and end of each request; that would close
    the connection holding the test's transaction (Django's own test client disconnects it too).
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _fuzz(strategy, headers, max_examples: int) -> list[int]:
    """Status codes of every call; each response checked for 5xx and against the schema."""
    statuses = []

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
        statuses.append(response.status_code)

    run()
    return statuses


def test_schemathesis_finds_no_server_error_and_no_schema_violation(channel, other_channel, wsgi_app, settings):
    # Hundreds of generated failed logins would trip the brute-force lockout (tested on its own).
    settings.AXES_ENABLED = False
    settings.LOGIN_RATE_PER_IP = settings.LOGIN_RATE_PER_USERNAME = "0"  # the same for the login rate limits
    placed = place_order(channel.app)
    refund = RefundErrorFactory(refund__bag=placed.bag).refund
    RefundSkuFactory(refund=refund, order_sku=placed.skus[0])
    foreign = place_order(other_channel.app)
    webhooks, events = {}, {}
    for app, bag in ((channel.app, placed.bag), (other_channel.app, foreign.bag)):
        registered = webhook_endpoint_register(app=app, url=f"https://hooks{app.pk}.example/violet", actor="test")
        webhooks[app.pk] = registered.endpoint.pk
        bag_mark_canceled(bag=bag, actor="test")
        events[app.pk] = str(WebhookEvent.objects.filter(bag=bag).first().event_id)
    # Real ids of this app and another app's ids, so fuzzing reaches 200s as well as 404s.
    known_ids = st.sampled_from(
        [
            {
                "order_id": placed.order.pk,
                "bag_id": placed.bag.pk,
                "refund_id": refund.pk,
                "webhook_id": webhooks[channel.app.pk],
                "event_id": events[channel.app.pk],
            },
            {
                "order_id": foreign.order.pk,
                "bag_id": foreign.bag.pk,
                "refund_id": refund.pk,
                "webhook_id": webhooks[other_channel.app.pk],
                "event_id": events[other_channel.app.pk],
            },
        ]
    )
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app)
    refresh_headers = channel_headers(channel.app, channel.refresh_token())

    statuses = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == NOTICE_OPERATION[0]:
            continue  # the merchant API, with its own key: tests/refunds/api/test_contract.py
        path_names = [p.name for p in operation.path_parameters]
        with_known_ids = known_ids.flatmap(
            lambda ids, operation=operation, path_names=path_names: operation.as_strategy(
                path_parameters={name: ids[name] for name in path_names}
            )
        )
        strategy = st.one_of(operation.as_strategy(), with_known_ids) if path_names else operation.as_strategy()
        headers = refresh_headers if operation.path == "/v1/auth/token" else channel.headers
        statuses[operation.label] = set(_fuzz(strategy, headers, max_examples=40))

    # The run reached the endpoints' real answers, not only their rejections.
    assert statuses == {
        "POST /v1/login": statuses["POST /v1/login"],
        "GET /v1/auth/token": {200},
        "GET /v1/orders/{order_id}/refunds": {200, 404},
        "GET /v1/orders/{order_id}/refunds/{refund_id}": {200, 404},
        "GET /v1/orders/{order_id}/bags/{bag_id}/refunds": {200, 404},
        "POST /v1/orders/{order_id}/bags/{bag_id}/refunds": statuses[
            "POST /v1/orders/{order_id}/bags/{bag_id}/refunds"
        ],
        **{label: statuses[label] for label in statuses if " /v1/events" in label or label.endswith("/cancel")},
    }
    # Cancellations (issue 14): real answers (200, the OrderCancellation), never a 5xx.
    for label in ("POST /v1/orders/{order_id}/cancel", "POST /v1/orders/{order_id}/bags/{bag_id}/cancel"):
        assert 200 in statuses[label] and statuses[label] <= {200, 400, 404, 415, 422}, label
    # Webhooks: fuzzing may delete this app's webhook early, so later calls see 404s only.
    assert statuses["GET /v1/events/webhooks"] == {200}
    assert statuses["POST /v1/events/webhooks"] <= {201, 400, 409}
    assert statuses["GET /v1/events/webhooks/{webhook_id}"] <= {200, 404}
    assert statuses["PATCH /v1/events/webhooks/{webhook_id}"] <= {200, 400, 404, 409, 415}
    assert statuses["DELETE /v1/events/webhooks/{webhook_id}"] <= {204, 404}
    assert statuses["GET /v1/events"] <= {200, 400} and 200 in statuses["GET /v1/events"]
    assert statuses["POST /v1/events/{event_id}/resend"] <= {202, 400, 404, 409, 415}
    assert 404 in statuses["POST /v1/events/{event_id}/resend"]
    assert statuses["POST /v1/login"] <= {400, 401}
    # Schema-valid refunds are recorded or refused by the bag's state (422), never as malformed (400).
    assert {201, 404} <= statuses["POST /v1/orders/{order_id}/bags/{bag_id}/refunds"] <= {200, 201, 404, 409, 422}

"""Every throttled operation of the OpenAPI document (channel API and notice API) documents its 429:
the API's error shape and a Retry-After header. Throttled = the view behind the path has a DRF
throttle, found by resolving each path of the document to its view."""

import re

import pytest
from django.urls import resolve

from tests.refunds.api.conftest import make_channel

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/v1/schema/?format=json"


def _view_class(path: str):
    concrete = re.sub(r"\{[^}]+\}", "1", path)
    if "{event_id}" in path:
        concrete = path.replace("{event_id}", "00000000-0000-0000-0000-000000000001")
    return resolve(concrete).func.view_class


def _resolve_ref(openapi: dict, item: dict) -> dict:
    ref = item.get("$ref")
    if not ref:
        return item
    node = openapi
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def test_every_throttled_operation_documents_429_with_retry_after_in_the_error_shape(api_client):
    openapi = api_client.get(SCHEMA_URL).json()
    error_schema = openapi["components"]["schemas"]["Error"]

    throttled_operations = []
    for path, item in openapi["paths"].items():
        view_class = _view_class(path)
        for method, operation in item.items():
            if not view_class().get_throttles():
                continue
            throttled_operations.append((method.upper(), path))
            response = operation["responses"].get("429")
            assert response is not None, f"{method.upper()} {path} is throttled but does not document 429"
            assert response["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
            assert _resolve_ref(openapi, response["content"]["application/json"]["schema"]) == error_schema

    # Every operation of both APIs is throttled (per credential, or the login limits).
    assert ("POST", "/v1/login") in throttled_operations
    assert ("POST", "/v1/events/webhooks/{webhook_id}/test") in throttled_operations
    assert ("POST", "/portal/api/refund-notices") in throttled_operations
    assert len(throttled_operations) == sum(len(item) for item in openapi["paths"].values())


def test_the_webhook_callbacks_do_not_claim_the_channels_endpoint_answers_429(api_client):
    openapi = api_client.get(SCHEMA_URL).json()
    callbacks = openapi["paths"]["/v1/events/webhooks"]["post"]["callbacks"]

    for callback in callbacks.values():
        for item in callback.values():
            assert set(item["post"]["responses"]) == {"200"}


def test_a_throttled_answer_matches_what_the_schema_says(api_client, settings):
    settings.API_RATE_LIMIT = "1/m"
    channel = make_channel()
    api_client.get("/v1/events/webhooks", headers=channel.headers)

    response = api_client.get("/v1/events/webhooks", headers=channel.headers)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert set(response.json()) == {"status", "message", "error_code", "timestamp"}
    assert (response.json()["status"], response.json()["error_code"]) == (429, "throttled")

"""The API contract (issue 19, item 5): schemathesis runs every check (status-code, content-type,
header and schema conformance, negative-data rejection, strict positive-data acceptance, missing required
headers, unsupported methods, ignored auth) on positive and negative data, against the channel API
and the merchant notice API, and finds nothing. Bounded examples keep it fast."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import PositiveDataAcceptanceConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from notifications.models import WebhookEvent
from notifications.services import webhook_endpoint_register
from portal.keys import api_key_create
from refunds.api.auth import TokenType, token_issue
from refunds.models import AppMembership
from refunds.services import bag_mark_canceled
from tests.factories import AppMembershipFactory, UserFactory
from tests.portal.conftest import notice_bag
from tests.refunds.api.conftest import Channel, channel_headers, place_order
from tests.refunds.api.test_schema import SCHEMA_URL, wsgi_app  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

ALL_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    ignored_auth,
]
EXAMPLES = 25
# Schema-valid requests are accepted (schemathesis's strict positive_data_acceptance): what the schema
# can state it states (minimums, patterns, oneOf/not for "exactly one of" and "not both"), so a 400 is
# only ever a malformed request. A well-formed request that the bag's state refuses (more than is left,
# a line of another bag, nothing to refund) is a documented 422 (RequestUnprocessable), which RFC 9110
# names for exactly that and which is added to schemathesis's defaults here; a 400 is not.
POSITIVE_STATUSES = [*PositiveDataAcceptanceConfig().expected_statuses, "422"]


def _fuzz(strategy, headers, failures: list) -> set[int]:
    statuses: set[int] = set()

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def run(case):
        response = case.call(headers=headers)
        statuses.add(response.status_code)
        try:
            case.validate_response(response, checks=ALL_CHECKS, headers=headers)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis FailureGroup: collect, fail once
            found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            for failure in found:
                title = getattr(failure, "title", type(failure).__name__)
                detail = str(getattr(failure, "message", failure))[:300]
                body = response.text[:200]
                failures.append(f"{case.operation.label} [{response.status_code}] {title}: {detail} | {body}")

    run()
    return statuses


def test_schemathesis_all_checks_positive_and_negative_on_both_apis(wsgi_app, settings):  # noqa: F811
    settings.AXES_ENABLED = False  # hundreds of generated failed logins would trip the lockout
    # One SFCC Option 2 bag whose app is the channel's: both APIs reach real answers, not only 404s.
    bag = notice_bag()
    owner = UserFactory()
    AppMembershipFactory(app=bag.order.app, user=owner, role=AppMembership.Role.OWNER)
    channel = Channel(
        app=bag.order.app,
        owner=owner,
        headers=channel_headers(bag.order.app, token_issue(user=owner, app=bag.order.app, token_type=TokenType.ACCESS)),
    )
    placed = place_order(channel.app)
    webhook = webhook_endpoint_register(app=channel.app, url="https://hooks.example/violet", actor="test").endpoint
    bag_mark_canceled(bag=placed.bag, actor="test")
    event = WebhookEvent.objects.filter(bag=placed.bag).first()
    merchant_key = api_key_create(merchant=bag.merchant, name="OMS")
    ids = st.just(
        {
            "order_id": placed.order.pk,
            "bag_id": placed.bag.pk,
            "refund_id": 1,
            "webhook_id": webhook.pk,
            "event_id": str(event.event_id),
        }
    )
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app)
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(expected_statuses=POSITIVE_STATUSES)
    failures: list[str] = []
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        names = [p.name for p in operation.path_parameters]
        if operation.path == "/portal/api/refund-notices":
            headers = {"Authorization": f"Bearer {merchant_key.plaintext}"}
        elif operation.path == "/v1/auth/token":
            headers = channel_headers(channel.app, channel.refresh_token())
        else:
            headers = channel.headers
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if names:
                strategy = ids.flatmap(
                    lambda known, operation=operation, names=names, mode=mode: operation.as_strategy(
                        generation_mode=mode, path_parameters={n: known[n] for n in names}
                    )
                )
                strategy = st.one_of(operation.as_strategy(generation_mode=mode), strategy)
            else:
                strategy = operation.as_strategy(generation_mode=mode)
            seen.setdefault(operation.label, set()).update(_fuzz(strategy, headers, failures))

    distinct = sorted(set(failures))
    assert not distinct, "\n\n".join(distinct[:20]) + f"\n\n({len(distinct)} distinct failures)"
    assert "POST /portal/api/refund-notices" in seen and 201 in seen["POST /v1/orders/{order_id}/bags/{bag_id}/refunds"]


def test_every_webhook_event_type_has_its_body_schema_in_the_document(api_client):
    from notifications.models import ORDER_EVENT_TYPES, EventType

    openapi = api_client.get(SCHEMA_URL).json()
    callbacks = openapi["paths"]["/v1/events/webhooks"]["post"]["callbacks"]
    components = openapi["components"]["schemas"]

    assert set(callbacks) == set(EventType.values)
    for event_type, callback in callbacks.items():
        body = callback["{$request.body#/remote_endpoint}"]["post"]["requestBody"]["content"]["application/json"]
        name = body["schema"]["$ref"].rsplit("/", 1)[1]
        assert name == "".join(w.capitalize() for w in event_type.split("_")) + "WebhookBody"
        if event_type == EventType.TEST:  # asked for by the channel: about no order
            assert {"type", "test", "event_id", "app_id", "webhook_id"} <= set(components[name]["properties"])
        elif event_type in ORDER_EVENT_TYPES:  # the full Order
            assert {"id", "app_id", "bags", "total"} <= set(components[name]["properties"])
        else:  # the Order Refund object, exactly as GET .../refunds/{refund_id} returns it
            assert components[name]["properties"] == components["Refund"]["properties"]


def test_the_notice_api_and_the_server_enforced_minimums_are_stated(api_client):
    openapi = api_client.get(SCHEMA_URL).json()
    notice = openapi["paths"]["/portal/api/refund-notices"]["post"]
    refund_bag = openapi["paths"]["/v1/orders/{order_id}/bags/{bag_id}/refunds"]["post"]
    events = {p["name"]: p["schema"] for p in openapi["paths"]["/v1/events"]["get"]["parameters"]}

    assert {"200", "201", "400", "401", "403", "404", "413", "415", "422"} <= set(notice["responses"])
    assert {"200", "201", "400", "401", "404", "413", "415", "422"} <= set(refund_bag["responses"])
    assert refund_bag["requestBody"]["required"] is True
    assert all(p["schema"]["minimum"] == 1 for p in refund_bag["parameters"] if p["in"] == "path")
    assert (events["page"]["minimum"], events["size"]["minimum"], events["size"]["maximum"]) == (1, 1, 100)
    assert events["order_id"]["minimum"] == events["bag_id"]["minimum"] == 1

"""An app sees only its own orders: another app's ids answer exactly like ids that do not exist."""

import pytest

from refunds.models import Refund
from tests.factories import RefundFactory
from tests.refunds.api.conftest import place_order

pytestmark = pytest.mark.django_db

MISSING = 987654321


def _body_without_timestamp(response) -> dict:
    body = dict(response.json())
    assert isinstance(body.pop("timestamp"), int)
    return body


def _call(api_client, method, url, headers):
    if method == "post":
        return api_client.post(url, {}, format="json", headers=headers)
    return api_client.get(url, headers=headers)


@pytest.fixture
def own_and_foreign(channel, other_channel):
    own = place_order(channel.app)
    foreign = place_order(other_channel.app)
    return {
        "own": own,
        "own_refund": RefundFactory(bag=own.bag),
        "foreign": foreign,
        "foreign_refund": RefundFactory(bag=foreign.bag),
    }


# (method, url template, what each placeholder is filled with for the "foreign" and "missing" cases)
ENDPOINTS = {
    "order refunds": ("get", "/v1/orders/{order}/refunds"),
    "refund detail": ("get", "/v1/orders/{order}/refunds/{refund}"),
    "bag refunds": ("get", "/v1/orders/{order}/bags/{bag}/refunds"),
    "refund a bag": ("post", "/v1/orders/{order}/bags/{bag}/refunds"),
}


def _ids(data, case: str) -> dict:
    own, foreign = data["own"], data["foreign"]
    return {
        # Entirely another app's objects.
        "foreign": {"order": foreign.order.pk, "bag": foreign.bag.pk, "refund": data["foreign_refund"].pk},
        # Ids that exist nowhere.
        "missing": {"order": MISSING, "bag": MISSING, "refund": MISSING},
        # Our own order, with another app's bag / refund under it.
        "foreign-under-own-order": {
            "order": own.order.pk,
            "bag": foreign.bag.pk,
            "refund": data["foreign_refund"].pk,
        },
        # Another app's order, with our own bag / refund under it.
        "own-under-foreign-order": {
            "order": foreign.order.pk,
            "bag": own.bag.pk,
            "refund": data["own_refund"].pk,
        },
        # Our own bag/refund, under a missing order.
        "own-under-missing-order": {"order": MISSING, "bag": own.bag.pk, "refund": data["own_refund"].pk},
    }[case]


CASES = ["foreign", "foreign-under-own-order", "own-under-foreign-order", "own-under-missing-order"]
# The order refunds URL names only the order: "another app's id under our order" has nothing to probe.
COMBINATIONS = [
    (endpoint, case)
    for endpoint in ENDPOINTS
    for case in CASES
    if not (endpoint == "order refunds" and case == "foreign-under-own-order")
]


@pytest.mark.parametrize(("endpoint", "case"), COMBINATIONS)
def test_another_apps_ids_are_a_404_identical_to_a_missing_id(api_client, channel, own_and_foreign, endpoint, case):
    method, template = ENDPOINTS[endpoint]
    refunds_before = Refund.objects.count()

    probed = _call(api_client, method, template.format(**_ids(own_and_foreign, case)), channel.headers)
    missing = _call(api_client, method, template.format(**_ids(own_and_foreign, "missing")), channel.headers)

    assert probed.status_code == missing.status_code == 404
    assert _body_without_timestamp(probed) == _body_without_timestamp(missing)
    assert _body_without_timestamp(missing)["error_code"] == "not_found"
    assert Refund.objects.count() == refunds_before


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_owning_app_does_reach_its_own_ids(api_client, channel, own_and_foreign, endpoint):
    method, template = ENDPOINTS[endpoint]
    own = own_and_foreign["own"]
    url = template.format(order=own.order.pk, bag=own.bag.pk, refund=own_and_foreign["own_refund"].pk)

    response = _call(api_client, method, url, channel.headers)

    assert response.status_code in {200, 201}


def test_the_other_app_reaches_its_own_refund_and_not_ours(api_client, other_channel, own_and_foreign):
    foreign_refund = own_and_foreign["foreign_refund"]
    own_refund = own_and_foreign["own_refund"]

    theirs = api_client.get(
        f"/v1/orders/{foreign_refund.bag.order_id}/refunds/{foreign_refund.pk}", headers=other_channel.headers
    )
    ours = api_client.get(
        f"/v1/orders/{own_refund.bag.order_id}/refunds/{own_refund.pk}", headers=other_channel.headers
    )

    assert theirs.status_code == 200
    assert theirs.json()["app_id"] == other_channel.app.pk
    assert ours.status_code == 404

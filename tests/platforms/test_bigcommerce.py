"""BigCommerce end to end: hook with its secret header -> receiver -> order + refunds read from the
(mocked) API -> Refund rows; bad input at the receiver; the client; parallel duplicates."""

import json
from decimal import Decimal

import pytest
import responses
from django.test import override_settings

from platforms.adapters import webhook_adapter_for_slug
from platforms.adapters.base import (
    RefundLine,
    parse_json,
)
from platforms.adapters.bigcommerce import BigCommerceAdapter, parse_refund
from platforms.clients.base import ConnectionMisconfigured, PlatformResponseInvalid
from platforms.clients.bigcommerce import BigCommerceClient
from platforms.models import InboundEvent, Platform
from refunds.models import Refund, RefundSource
from refunds.services import refund_record
from tests.factories import StoreConnectionFactory
from tests.parallel import run_in_parallel
from tests.platforms.conftest import make_store
from tests.platforms.delivery import REMOVED, assert_rejected, deliver, fixture_json, fixture_text, post_webhook
from violet_refunds.money import AmountParts

STORE_HASH = "x7kq2m9d4f"
WEBHOOK_SECRET = "bc-hook-secret-6Qm1w2Yc0Jx9Rk4tVb7n"
ACCESS_TOKEN = "bc-api-token-test"
ORDER_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v2/orders/250"
REFUNDS_URL = f"https://api.bigcommerce.com/stores/{STORE_HASH}/v3/orders/250/payment_actions/refunds"
MUG, TOWEL = "101", "102"


@pytest.fixture
def bc_store(db):
    return make_store(
        Platform.BIGCOMMERCE,
        order_id="250",
        line_ids=(MUG, TOWEL),
        webhook_secret=WEBHOOK_SECRET,
        credentials={"store_hash": STORE_HASH, "access_token": ACCESS_TOKEN},
    )


REFUND_CREATED = "webhook_refund_created"  # captured hooks, signed (secret header) by deliver()
STATUS_UPDATED = "webhook_status_updated_cancelled"


def status_to(new_status_id: int) -> dict:
    """The changes that make the captured statusUpdated hook a change to `new_status_id`."""
    return {"data.status.new_status_id": new_status_id}


def order(status_id: int = 11) -> dict:
    return fixture_json("bigcommerce", "order.json") | {"status_id": status_id}


def refunds_body(*refunds: dict) -> dict:
    body = fixture_json("bigcommerce", "refunds_none.json")
    body["data"] = list(refunds)
    return body


def partial_refund() -> dict:
    return fixture_json("bigcommerce", "refunds_partial.json")["data"][0]


def full_refund(refund_id: int = 4) -> dict:
    """Everything in one refund: both lines, all shipping, all tax."""
    refund = partial_refund() | {"id": refund_id, "total_amount": 118, "total_tax": 8, "reason": "Full refund"}
    refund["payments"][0]["amount"] = 118
    refund["items"] = [
        {"item_type": "PRODUCT", "item_id": 101, "quantity": 2, "requested_amount": None},
        {"item_type": "PRODUCT", "item_id": 102, "quantity": 1, "requested_amount": None},
        {"item_type": "SHIPPING", "item_id": 51, "requested_amount": 10},
    ]
    return refund


def mock_api(*, status_id: int = 11, refunds: tuple = ()):
    order_call = responses.get(ORDER_URL, json=order(status_id))
    refunds_call = responses.get(REFUNDS_URL, json=refunds_body(*refunds))
    return order_call, refunds_call


def parts(refund: Refund) -> tuple[int, int, int, int]:
    return refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount


def skus(refund: Refund) -> dict[str, int]:
    return {line.order_sku.external_id: line.quantity_refunded for line in refund.skus.all()}


# --- Rules ---


@responses.activate
def test_refund_created_records_the_offline_refund_with_its_parts_and_lines(bc_store):
    order_call, refunds_call = mock_api(status_id=14, refunds=(partial_refund(),))
    response = deliver(bc_store, REFUND_CREATED).response

    assert response.status_code == 200
    assert response.json() == {"status": "received", "event_id": "cb07cdbd6d1a4c1a7b0e1e5e0c4c6a3c2b9f8e17"}
    refund = Refund.objects.get(bag=bc_store.bag)
    assert refund.external_id == "3"
    assert parts(refund) == (4820, 4000, 500, 320)
    assert (refund.refund_currency, refund.reason) == ("USD", "Customer returned one mug")
    assert refund.source == RefundSource.PLATFORM_WEBHOOK
    assert skus(refund) == {MUG: 1}
    bc_store.mug.refresh_from_db()
    assert bc_store.mug.quantity_refunded == 1
    event = InboundEvent.objects.get()
    assert (event.status, event.topic) == (InboundEvent.Status.PROCESSED, "store/order/refund/created")
    assert refund.inbound_event == event
    for call in (order_call.calls[0], refunds_call.calls[0]):
        assert call.request.headers["X-Auth-Token"] == ACCESS_TOKEN


@responses.activate
def test_cancelled_without_a_refund_refunds_everything_left(bc_store):
    mock_api(status_id=5)
    response = deliver(bc_store, STATUS_UPDATED, changes=status_to(5)).response

    assert response.status_code == 200
    refund = Refund.objects.get(bag=bc_store.bag)
    assert refund.external_id == "cancel:250"
    assert parts(refund) == (11800, 10000, 1000, 800)
    assert skus(refund) == {MUG: 2, TOWEL: 1}
    assert refund.restock_items is True
    assert "Cancelled" in refund.reason
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED


@responses.activate
def test_partial_refund_then_cancel_records_both_and_exactly_the_bag(bc_store):
    # BigCommerce shows the earlier refund and the Cancelled status: the refund first, then the rest.
    mock_api(status_id=5, refunds=(partial_refund(),))
    deliver(bc_store, STATUS_UPDATED, changes=status_to(5))

    refunds = {r.external_id: r for r in Refund.objects.filter(bag=bc_store.bag)}
    assert set(refunds) == {"3", "cancel:250"}
    assert parts(refunds["3"]) == (4820, 4000, 500, 320)
    assert parts(refunds["cancel:250"]) == (6980, 6000, 500, 480)
    assert skus(refunds["cancel:250"]) == {MUG: 1, TOWEL: 1}
    assert sum(r.amount for r in refunds.values()) == bc_store.bag.total == 11800


@responses.activate
def test_refunded_status_after_a_full_refund_records_only_that_refund(bc_store):
    mock_api(status_id=4, refunds=(full_refund(),))
    deliver(bc_store, STATUS_UPDATED, changes=status_to(4))

    refund = Refund.objects.get(bag=bc_store.bag)
    assert (refund.external_id, *parts(refund)) == ("4", 11800, 10000, 1000, 800)
    assert skus(refund) == {MUG: 2, TOWEL: 1}
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.PROCESSED
    assert "already fully refunded, so cancel:250 records nothing" in event.outcome


@responses.activate
def test_refunded_status_set_by_hand_without_a_refund_refunds_everything_left(bc_store):
    mock_api(status_id=4)
    deliver(bc_store, STATUS_UPDATED, changes=status_to(4))

    assert list(Refund.objects.values_list("external_id", "amount")) == [("cancel:250", 11800)]


@responses.activate
def test_refund_created_and_status_updated_for_the_same_refund_record_it_once(bc_store):
    mock_api(status_id=14, refunds=(partial_refund(),))
    deliver(bc_store, REFUND_CREATED)
    status = deliver(bc_store, STATUS_UPDATED, changes=status_to(14), event_id="status-14")

    assert list(Refund.objects.values_list("external_id", "amount")) == [("3", 4820)]
    statuses = dict(InboundEvent.objects.values_list("topic", "status"))
    assert statuses == {
        "store/order/refund/created": InboundEvent.Status.PROCESSED,
        "store/order/statusUpdated": InboundEvent.Status.IGNORED,
    }
    assert "already recorded" in status.event.outcome


@responses.activate
def test_declined_refund_payment_moves_no_money_and_records_nothing(bc_store):
    declined = partial_refund()
    declined["payments"][0].update(offline=False, is_declined=True, declined_message="Card expired")
    mock_api(status_id=11, refunds=(declined,))
    deliver(bc_store, REFUND_CREATED)

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "refund 3 returned no money" in event.outcome
    assert "11 (Awaiting Fulfillment)" in event.outcome


@responses.activate
def test_order_level_refund_has_no_split_so_its_money_is_divided_pro_rata(bc_store):
    goodwill = partial_refund() | {"id": 9, "total_amount": 11.8, "total_tax": 0, "reason": "Goodwill"}
    goodwill["payments"][0]["amount"] = 11.8
    goodwill["items"] = [{"item_type": "ORDER", "item_id": 250, "requested_amount": 11.8}]
    mock_api(status_id=14, refunds=(goodwill,))
    deliver(bc_store, REFUND_CREATED)

    refund = Refund.objects.get()
    assert (refund.external_id, *parts(refund)) == ("9", 1180, 1000, 100, 80)
    assert skus(refund) == {}


@pytest.mark.parametrize("new_status_id", [2, 10, 11, 0])
@responses.activate
def test_other_status_changes_are_ignored_without_calling_the_api(bc_store, new_status_id):
    response = deliver(bc_store, STATUS_UPDATED, changes=status_to(new_status_id)).response

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert f"changed to {new_status_id} (" in event.outcome
    assert len(responses.calls) == 0
    assert not Refund.objects.exists()


@pytest.mark.parametrize("scope", ["store/order/created", "store/order/updated", "store/product/updated"])
@responses.activate
def test_other_scopes_are_ignored_without_calling_the_api(bc_store, scope):
    deliver(bc_store, REFUND_CREATED, topic=scope)

    event = InboundEvent.objects.get()
    assert (event.status, event.topic) == (InboundEvent.Status.IGNORED, scope)
    assert len(responses.calls) == 0


@responses.activate
def test_order_that_is_not_ours_is_ignored_without_calling_the_api(bc_store):
    deliver(bc_store, REFUND_CREATED, changes={"data.id": 999})

    assert len(responses.calls) == 0
    assert "Order 999 is not a known order" in InboundEvent.objects.get().outcome


@responses.activate
def test_event_from_another_store_is_ignored_without_calling_the_api(bc_store):
    deliver(bc_store, REFUND_CREATED, changes={"producer": "stores/someoneelse"})

    assert len(responses.calls) == 0
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "stores/someoneelse" in event.outcome


@responses.activate
def test_order_unknown_to_bigcommerce_is_ignored(bc_store):
    responses.get(ORDER_URL, status=404, json=[{"status": 404, "message": "The requested resource was not found."}])
    deliver(bc_store, REFUND_CREATED)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert f"BigCommerce has no order 250 in store {STORE_HASH}" in event.outcome


@responses.activate
def test_api_5xx_is_retried_by_the_task_until_it_works(bc_store):
    for _ in range(3):  # the client's 3 quick attempts fail; the task's retry succeeds
        responses.get(ORDER_URL, status=503, body="Service Unavailable")
    mock_api(status_id=14, refunds=(partial_refund(),))
    deliver(bc_store, REFUND_CREATED)

    event = InboundEvent.objects.get()
    assert (event.status, event.error, event.attempts) == (InboundEvent.Status.PROCESSED, "", 2)
    assert Refund.objects.get().external_id == "3"


@responses.activate
def test_revoked_api_token_fails_the_event_without_retrying(bc_store):
    api = responses.get(ORDER_URL, status=401, json={"status": 401, "title": "Unauthorized"})
    deliver(bc_store, REFUND_CREATED)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.FAILED
    assert "PlatformAuthenticationFailed" in event.error
    assert ACCESS_TOKEN not in event.error
    assert api.call_count == 1
    assert not Refund.objects.exists()


@responses.activate
def test_connection_without_api_credentials_fails_the_event_with_the_reason(bc_store):
    bc_store.connection.credentials = {"store_hash": STORE_HASH}
    bc_store.connection.save()
    deliver(bc_store, REFUND_CREATED)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.FAILED
    assert "lacks: access_token" in event.error


@responses.activate
def test_cancel_after_a_merchant_notice_refunds_only_what_is_left(bc_store):
    refund_record(bag=bc_store.bag, source=RefundSource.MERCHANT_NOTICE, actor="merchant:test", amount=1180)
    mock_api(status_id=5)
    deliver(bc_store, STATUS_UPDATED, changes=status_to(5))

    assert Refund.objects.get(external_id="cancel:250").amount == 11800 - 1180


# --- Duplicates ---


@responses.activate
def test_same_event_three_times_is_stored_once_and_refunds_once(bc_store):
    order_call, refunds_call = mock_api(status_id=14, refunds=(partial_refund(),))
    deliveries = [deliver(bc_store, REFUND_CREATED) for _ in range(3)]
    answers = [(delivery.response.json()["status"], len(delivery.enqueued)) for delivery in deliveries]

    assert [status for status, _ in answers] == ["received", "duplicate", "duplicate"]
    assert [enqueued > 0 for _, enqueued in answers] == [True, False, False]  # duplicates enqueue nothing
    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1
    assert (order_call.call_count, refunds_call.call_count) == (1, 1)


@responses.activate
def test_same_refund_under_a_new_hash_records_nothing_new(bc_store):
    mock_api(status_id=14, refunds=(partial_refund(),))
    deliver(bc_store, REFUND_CREATED, event_id="first")
    second = deliver(bc_store, REFUND_CREATED, event_id="second-hook")

    assert Refund.objects.count() == 1
    assert second.event.status == InboundEvent.Status.IGNORED


# --- Bad input at the receiver ---


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-secret", f"Basic {WEBHOOK_SECRET}", f"Bearer {WEBHOOK_SECRET}x", "Bearer é"],
    ids=["missing", "empty", "no-token", "wrong", "other-scheme", "longer", "non-ascii"],
)
def test_missing_or_wrong_secret_header_is_401(bc_store, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, secret=None, headers=headers), 401, "invalid_signature")


def test_connection_without_a_webhook_secret_accepts_nothing(bc_store):
    bc_store.connection.webhook_secret = ""
    bc_store.connection.save()
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, secret=""), 401, "invalid_signature")


def test_scheme_is_case_insensitive(bc_store):
    lower_case = {"Authorization": f"bearer {WEBHOOK_SECRET}"}
    assert post_webhook(bc_store, REFUND_CREATED, secret=None, headers=lower_case).status_code == 200


@pytest.mark.parametrize("body", [b'{"scope": "store/order/refund/created",', b"[1, 2]", b"\xff\xfe"])
def test_authentic_but_malformed_json_is_400(bc_store, body):
    assert_rejected(post_webhook(bc_store, body=body), 400, "malformed_payload")


@pytest.mark.parametrize("missing", ["hash", "scope"])
def test_authentic_but_without_hash_or_scope_is_400(bc_store, missing):
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, changes={missing: REMOVED}), 400, "malformed_payload")


def test_unknown_connection_is_404(bc_store):
    response = post_webhook(bc_store, REFUND_CREATED, url="/webhooks/bigcommerce/6b1e9d55-0d4b-4c3c-9d55-2f1a3b4c5d6e/")
    assert_rejected(response, 404, "not_found")


def test_another_platforms_slug_is_404(bc_store):
    response = post_webhook(bc_store, body=b"{}", secret=None, url=bc_store.url("woocommerce"))
    assert_rejected(response, 404, "not_found")


@override_settings(PLATFORM_WEBHOOK_MAX_BODY_BYTES=1000)
def test_oversized_body_is_413(bc_store):
    assert_rejected(post_webhook(bc_store, REFUND_CREATED, changes={"padding": "x" * 2000}), 413, "payload_too_large")


def test_the_secret_header_is_never_stored(bc_store):
    with responses.RequestsMock() as mock:
        mock.get(ORDER_URL, json=order(14))
        mock.get(REFUNDS_URL, json=refunds_body(partial_refund()))
        deliver(bc_store, REFUND_CREATED)

    event = InboundEvent.objects.get()
    assert WEBHOOK_SECRET not in json.dumps(event.headers)
    assert event.body == fixture_text("bigcommerce", f"{REFUND_CREATED}.json")


# --- Adapter and client ---


def test_registered_for_webhooks():
    adapter = webhook_adapter_for_slug("bigcommerce")
    assert isinstance(adapter, BigCommerceAdapter)
    assert adapter.platform == Platform.BIGCOMMERCE


def _refund_as_parsed() -> dict:
    # As the client hands it over: JSON numbers as Decimal.
    return parse_json(fixture_text("bigcommerce", "refunds_partial.json"))["data"][0]


def test_refund_fixture_normalizes():
    refund = parse_refund(_refund_as_parsed(), currency="USD")
    assert (refund.external_id, refund.amount) == ("3", 4820)
    assert refund.parts == AmountParts(sub_total=4000, shipping=500, tax=320)
    assert refund.lines == (RefundLine("101", 1),)
    assert refund.created_at.isoformat() == "2026-03-03T13:11:19+00:00"


def test_float_artefacts_round_to_the_cent():
    refund = _refund_as_parsed()
    refund["payments"][0]["amount"] = Decimal("48.200000000000003")
    assert parse_refund(refund, currency="USD").amount == 4820


def test_order_fixture_normalizes():
    order_as_parsed = parse_json(fixture_text("bigcommerce", "order.json")) | {"status_id": 5}
    state = BigCommerceAdapter().state_from_api(order_as_parsed, [], fallback_currency="EUR")
    assert (state.order_id, state.status, state.cancelled, state.currency) == ("250", "5", True, "USD")
    assert state.totals == AmountParts(sub_total=10000, shipping=1000, tax=800)
    assert state.placed_at.isoformat() == "2026-02-27T14:00:11+00:00"


@responses.activate
def test_client_follows_refund_pages():
    first = refunds_body(partial_refund())
    first["meta"]["pagination"].update(total=2, total_pages=2)
    responses.get(REFUNDS_URL, json=first)
    responses.get(REFUNDS_URL, json=refunds_body(full_refund()))
    client = BigCommerceClient(store_hash=STORE_HASH, access_token=ACCESS_TOKEN)

    assert [refund["id"] for refund in client.get_order_refunds("250")] == [3, 4]
    assert [call.request.params["page"] for call in responses.calls] == ["1", "2"]
    assert responses.calls[0].request.headers["X-Auth-Token"] == ACCESS_TOKEN


@responses.activate
def test_client_rejects_a_refunds_body_that_is_not_a_list():
    responses.get(REFUNDS_URL, json={"data": {"id": 3}})
    with pytest.raises(PlatformResponseInvalid):
        BigCommerceClient(store_hash=STORE_HASH, access_token=ACCESS_TOKEN).get_order_refunds("250")


def test_client_needs_store_hash_and_token(db):
    connection = StoreConnectionFactory(merchant__platform=Platform.BIGCOMMERCE, credentials={"store_hash": " "})
    with pytest.raises(ConnectionMisconfigured, match="store_hash, access_token"):
        BigCommerceClient.from_connection(connection)


# --- Parallel duplicates (PostgreSQL) ---


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_same_event_three_times_in_parallel_is_stored_and_refunded_once(bc_store):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(ORDER_URL, json=order(5))
        mock.get(REFUNDS_URL, json=refunds_body(partial_refund()))

        def cancelled():
            return deliver(bc_store, STATUS_UPDATED, changes=status_to(5)).response.status_code

        assert run_in_parallel(cancelled, cancelled, cancelled) == [200, 200, 200]

    assert InboundEvent.objects.count() == 1
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    assert sorted(Refund.objects.values_list("external_id", "amount")) == [("3", 4820), ("cancel:250", 6980)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_refund_created_and_cancel_in_parallel_never_refund_more_than_the_bag(bc_store):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(ORDER_URL, json=order(5))
        mock.get(REFUNDS_URL, json=refunds_body(partial_refund()))

        def delivered(fixture, **options):
            return lambda: deliver(bc_store, fixture, **options).response.status_code

        results = run_in_parallel(
            delivered(REFUND_CREATED),
            delivered(STATUS_UPDATED, changes=status_to(5)),
            delivered(REFUND_CREATED, event_id="b"),
        )
        assert results == [200, 200, 200]

    assert InboundEvent.objects.count() == 3
    assert sorted(Refund.objects.values_list("external_id", "amount")) == [("3", 4820), ("cancel:250", 6980)]
    bc_store.mug.refresh_from_db()
    assert bc_store.mug.quantity_refunded == 2

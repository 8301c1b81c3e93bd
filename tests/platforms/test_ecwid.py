"""Ecwid rules end to end: signed event -> receiver -> order read from the (mocked) API -> Refund rows."""

import json

import pytest
import responses

from platforms.models import InboundEvent
from refunds.models import Refund, RefundSource
from tests.platforms.conftest import ecwid_order_url
from tests.platforms.delivery import deliver, fixture_json

ORDER_URL = ecwid_order_url("1003", "K8XTQ")


CANCELLED = "webhook_order_updated_cancelled"  # the captured order.updated event, signed by deliver()


def _order(payment_status: str) -> dict:
    order = fixture_json("ecwid", "order_cancelled.json")
    order["paymentStatus"] = payment_status
    return order


@responses.activate
def test_cancelled_order_is_a_full_refund_of_the_bag(ecwid_store):
    api = responses.get(ORDER_URL, json=_order("CANCELLED"))
    response = deliver(ecwid_store, CANCELLED).response

    assert response.status_code == 200
    refund = Refund.objects.get(bag=ecwid_store.bag)
    assert refund.external_id == "cancel:K8XTQ"
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        11800,
        10000,
        1000,
        800,
    )
    assert refund.source == RefundSource.PLATFORM_WEBHOOK
    assert {(s.order_sku.external_id, s.quantity_refunded) for s in refund.skus.all()} == {
        ("123456789", 2),
        ("123456790", 1),
    }
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    assert api.call_count == 1
    assert api.calls[0].request.headers["Authorization"] == "Bearer secret_ecwidtoken"


@responses.activate
def test_cancelled_then_refunded_refunds_once(ecwid_store):
    responses.get(ORDER_URL, json=_order("CANCELLED"))
    responses.get(ORDER_URL, json=_order("REFUNDED"))
    deliver(ecwid_store, CANCELLED, event_id="e-1")
    refunded = deliver(ecwid_store, CANCELLED, event_id="e-2", changes={"data.newPaymentStatus": "REFUNDED"})

    assert list(Refund.objects.values_list("external_id", "amount")) == [("cancel:K8XTQ", 11800)]
    assert refunded.event.status == InboundEvent.Status.IGNORED


@responses.activate
def test_refunded_status_alone_is_a_full_refund(ecwid_store):
    responses.get(ORDER_URL, json=_order("REFUNDED"))
    deliver(ecwid_store, CANCELLED, changes={"data.newPaymentStatus": "REFUNDED"})

    assert list(Refund.objects.values_list("external_id", "amount")) == [("cancel:K8XTQ", 11800)]


@responses.activate
def test_cancel_after_a_partial_refund_refunds_what_is_left(ecwid_store):
    from refunds.services import refund_record

    refund_record(bag=ecwid_store.bag, source="MERCHANT_NOTICE", actor="merchant:test", amount=1180)
    responses.get(ORDER_URL, json=_order("CANCELLED"))
    deliver(ecwid_store, CANCELLED)

    cancel = Refund.objects.get(external_id="cancel:K8XTQ")
    assert cancel.amount == 11800 - 1180


@responses.activate
def test_the_unsigned_body_is_not_trusted_the_api_is(ecwid_store):
    # A validly signed event whose (unsigned) body claims CANCELLED; Ecwid's API says PAID.
    responses.get(ORDER_URL, json=fixture_json("ecwid", "order_paid.json"))
    deliver(ecwid_store, CANCELLED)

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "PAID is not a refund signal" in event.outcome


@responses.activate
def test_partially_refunded_is_ignored_with_the_reason(ecwid_store):
    responses.get(ORDER_URL, json=_order("PARTIALLY_REFUNDED"))
    deliver(ecwid_store, CANCELLED, changes={"data.newPaymentStatus": "PARTIALLY_REFUNDED"})

    assert not Refund.objects.exists()
    assert "PARTIALLY_REFUNDED carries no refund amount" in InboundEvent.objects.get().outcome


@responses.activate
def test_order_unknown_to_ecwid_is_ignored(ecwid_store):
    responses.get(ORDER_URL, status=404, json={"errorMessage": "Order not found"})
    deliver(ecwid_store, CANCELLED)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "Ecwid has no order K8XTQ" in event.outcome


@responses.activate
def test_order_that_is_not_ours_awaits_its_order(ecwid_store):
    other_url = ecwid_order_url("1003", "ZZZZZ")
    order = _order("CANCELLED") | {"id": "ZZZZZ", "internalId": 1, "orderNumber": 1}
    responses.get(other_url, json=order)
    deliver(ecwid_store, CANCELLED, changes={"data.orderId": "ZZZZZ"})

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert (event.status, event.order_id) == (InboundEvent.Status.AWAITING_ORDER, "ZZZZZ")
    assert "ZZZZZ is not (yet) a bag" in event.outcome


@responses.activate
def test_event_for_another_store_is_ignored_without_calling_the_api(ecwid_store):
    deliver(ecwid_store, CANCELLED, changes={"storeId": 2222})

    assert len(responses.calls) == 0
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "store 2222" in event.outcome


@responses.activate
def test_api_5xx_is_retried_by_the_task_until_it_works(ecwid_store):
    for _ in range(4):  # the client's 3 quick attempts, then one more after the task's retry
        responses.get(ORDER_URL, status=503, body="Service Unavailable")
    responses.get(ORDER_URL, json=_order("CANCELLED"))
    deliver(ecwid_store, CANCELLED)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.PROCESSED
    assert event.error == ""
    assert event.attempts == 2
    assert Refund.objects.get().external_id == "cancel:K8XTQ"


@responses.activate
def test_bad_api_credentials_fail_the_event_without_retrying(ecwid_store):
    api = responses.get(ORDER_URL, status=403, json={"errorMessage": "Token is invalid"})
    deliver(ecwid_store, CANCELLED)

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.FAILED
    assert "PlatformAuthenticationFailed" in event.error
    assert "Traceback" in event.traceback
    assert api.call_count == 1
    assert not Refund.objects.exists()


@pytest.mark.parametrize("event_type", ["order.deleted", "unfinished_order.updated", "product.updated"])
@responses.activate
def test_other_event_types_are_ignored(ecwid_store, event_type):
    response = deliver(ecwid_store, CANCELLED, topic=event_type).response

    assert response.status_code == 200
    assert InboundEvent.objects.get().status == InboundEvent.Status.IGNORED
    assert len(responses.calls) == 0


@responses.activate
def test_duplicate_event_id_is_stored_once(ecwid_store):
    responses.get(ORDER_URL, json=_order("CANCELLED"))
    for _ in range(3):
        assert deliver(ecwid_store, CANCELLED).response.status_code == 200

    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1
    assert len(responses.calls) == 1


def test_body_is_stored_exactly_as_received(ecwid_store):
    raw = json.dumps(fixture_json("ecwid", f"{CANCELLED}.json"), indent=4).encode()
    with responses.RequestsMock() as mock:
        mock.get(ORDER_URL, json=_order("CANCELLED"))
        deliver(ecwid_store, CANCELLED, body=raw)

    assert InboundEvent.objects.get().body == raw.decode()

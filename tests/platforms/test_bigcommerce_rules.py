"""BigCommerce end to end, the rules: hook with its secret header -> receiver -> order + refunds read from the
(mocked) API -> Refund rows; what is recorded, what is ignored, API failures.
"""

import pytest
import responses

from platforms.models import InboundEvent
from refunds.models import Refund, RefundSource
from refunds.services import refund_record
from tests.platforms.bigcommerce_store import (
    ACCESS_TOKEN,
    MUG,
    ORDER_URL,
    REFUND_CREATED,
    STATUS_UPDATED,
    STORE_HASH,
    TOWEL,
    full_refund,
    mock_api,
    partial_refund,
    parts,
    skus,
    status_to,
)
from tests.platforms.delivery import deliver


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
def test_order_that_is_not_ours_awaits_its_order_without_calling_the_api(bc_store):
    deliver(bc_store, REFUND_CREATED, changes={"data.id": 999})

    assert len(responses.calls) == 0
    event = InboundEvent.objects.get()
    # Not (yet) a bag: BigCommerce cannot tell a network order from the store's own, so it waits.
    assert (event.status, event.order_id) == (InboundEvent.Status.AWAITING_ORDER, "999")
    assert "Order 999 is not (yet) a bag" in event.outcome


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

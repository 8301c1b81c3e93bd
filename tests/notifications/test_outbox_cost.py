"""What writing to the outbox costs, and that the cheap way writes what the plain way would.

The refund pipeline's throughput is bound by database round trips, so each emit call has a query
budget that does not grow with the number of endpoints, bags or SKUs: lock the bag (with the app's
endpoints), read the body's root row with the outbox state, load the rest of the body, insert the
events in one statement and their deliveries in one. The bodies still equal what the API renders.
"""

import json

import pytest

from notifications import services
from notifications.models import EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from payments.models import Recipient
from refunds import announcements, representation
from refunds.models import Bag, BagStatus, FinancialStatus, Order, RefundEvent, RefundStatus
from tests.factories import (
    BagFactory,
    OrderFactory,
    OrderSkuFactory,
    PaymentTransactionFactory,
    RefundErrorFactory,
    RefundEventFactory,
    RefundFactory,
    RefundSkuFactory,
    TransferReversalFactory,
)
from tests.notifications.conftest import register

pytestmark = pytest.mark.django_db

LOCK = 1  # the bag's row lock, with its order, app and the app's endpoints (and a retry count)
STATE = 1  # the body's root row with the bag's last sequence and which dedupe keys exist
EVENTS = 1  # every new event of the call, one INSERT
DELIVERIES = 1  # every delivery of those events, one INSERT (none when the app has no endpoint)
REFUND_WITH_SKUS = LOCK + STATE + 1 + EVENTS + DELIVERIES  # REFUND_PROCESSING of a refund with SKUs
ORDER_PAIR = LOCK + STATE + 2 + EVENTS + DELIVERIES  # ORDER_REFUNDED + ORDER_UPDATED: bags, SKUs
REPLAY = LOCK + STATE  # nothing new: nothing rendered, nothing written


def endpoints_for(app, count: int) -> list[WebhookEndpoint]:
    return [register(app, f"http://127.0.0.1:9/hook-{n}")[0] for n in range(count)]


def refund_with_skus(bag, *, lines: int = 2, **fields):
    refund = RefundFactory(bag=bag, **fields)
    for _ in range(lines):
        RefundSkuFactory(refund=refund, order_sku=OrderSkuFactory(bag=bag))
    return refund


def refunded_bag(*, bags_in_order: int = 1, skus_per_bag: int = 1):
    """A bag marked REFUNDED in an order of `bags_in_order` bags, each with some SKUs."""
    order = OrderFactory()
    PaymentTransactionFactory(order=order)
    bags = [BagFactory(order=order) for _ in range(bags_in_order)]
    for bag in bags:
        for _ in range(skus_per_bag):
            OrderSkuFactory(bag=bag)
    bag = bags[0]
    bag.status, bag.financial_status = BagStatus.REFUNDED, FinancialStatus.REFUNDED
    bag.save()
    return bag


# --- budgets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_count", [1, 3])
def test_a_refund_event_costs_five_queries_however_many_endpoints(django_assert_max_num_queries, endpoint_count):
    refund = refund_with_skus(BagFactory())
    endpoints = endpoints_for(refund.bag.order.app, endpoint_count)

    with django_assert_max_num_queries(REFUND_WITH_SKUS):
        event = announcements.refund_event_emit(refund)

    assert (event.event_type, event.sequence, event.refund_id) == (EventType.REFUND_PROCESSING, 1, refund.pk)
    assert event.dedupe_key == f"refund:{refund.pk}:PROCESSING:0"
    assert sorted(WebhookDelivery.objects.filter(event=event).values_list("endpoint_id", flat=True)) == [
        e.pk for e in endpoints
    ]


def test_without_an_endpoint_a_refund_event_costs_four_queries_and_makes_no_delivery(
    django_assert_max_num_queries,
):
    refund = refund_with_skus(BagFactory())
    disabled = endpoints_for(refund.bag.order.app, 1)[0]
    services.webhook_endpoint_disable(endpoint=disabled, actor="test", reason="test")

    with django_assert_max_num_queries(REFUND_WITH_SKUS - DELIVERIES):
        event = announcements.refund_event_emit(refund)

    assert WebhookEvent.objects.get() == event
    assert not WebhookDelivery.objects.exists()


def test_a_refund_with_errors_and_reversals_costs_one_query_more_for_each(django_assert_max_num_queries):
    refund = refund_with_skus(BagFactory(), status=RefundStatus.PARTIALLY_COMPLETED)
    RefundErrorFactory(refund=refund)
    TransferReversalFactory(refund=refund, gateway_reversal_id="trr_1")
    endpoints_for(refund.bag.order.app, 2)

    with django_assert_max_num_queries(REFUND_WITH_SKUS + 2):
        event = announcements.refund_event_emit(refund)

    body = json.loads(event.body)
    assert (len(body["skus"]), len(body["errors"]), body["transfer_reversals"]) == (2, 1, ["trr_1"])


def test_a_retried_refunds_round_is_read_with_the_lock(django_assert_max_num_queries):
    refund = refund_with_skus(BagFactory())
    RefundEventFactory(refund=refund, kind=RefundEvent.Kind.RETRY_REQUESTED)
    RefundEventFactory(refund=refund, kind=RefundEvent.Kind.RETRY_REQUESTED)
    endpoints_for(refund.bag.order.app, 1)

    with django_assert_max_num_queries(REFUND_WITH_SKUS):
        event = announcements.refund_event_emit(refund)

    assert event.dedupe_key == f"refund:{refund.pk}:PROCESSING:2"


def test_the_two_order_events_of_a_change_share_one_lock_one_body_and_two_inserts(django_assert_max_num_queries):
    bag = refunded_bag(bags_in_order=3, skus_per_bag=4)
    endpoints = endpoints_for(bag.order.app, 2)
    WebhookEvent.objects.create(
        app=bag.order.app, order=bag.order, bag=bag, event_type=EventType.REFUND_PROCESSING, sequence=1, body="{}"
    )

    with django_assert_max_num_queries(ORDER_PAIR):
        refunded, updated = announcements.bag_refund_events_emit(bag, refunded_amount=11300)

    assert (refunded.event_type, updated.event_type) == (EventType.ORDER_REFUNDED, EventType.ORDER_UPDATED)
    assert (refunded.sequence, updated.sequence) == (2, 3)
    assert refunded.body == updated.body
    assert len(json.loads(refunded.body)["bags"]) == 3
    assert WebhookDelivery.objects.count() == 2 * len(endpoints)


def test_cancel_events_cost_the_same_as_refund_events(django_assert_max_num_queries):
    bag = BagFactory(status=BagStatus.CANCELED)
    OrderSkuFactory(bag=bag)
    endpoints_for(bag.order.app, 1)

    with django_assert_max_num_queries(ORDER_PAIR):
        events = announcements.bag_cancel_events_emit(bag)

    assert [e.event_type for e in events] == [EventType.ORDER_CANCELLED, EventType.ORDER_UPDATED]
    assert WebhookDelivery.objects.count() == 2


def test_emitting_a_change_again_only_reads_and_writes_nothing(django_assert_max_num_queries):
    refund = refund_with_skus(BagFactory(order=OrderFactory()))
    bag = refund.bag
    bag.status, bag.financial_status = BagStatus.PARTIALLY_REFUNDED, FinancialStatus.PARTIALLY_REFUNDED
    endpoints_for(bag.order.app, 1)
    announcements.refund_event_emit(refund)
    announcements.bag_refund_events_emit(bag, refunded_amount=5000)
    written = sorted(WebhookEvent.objects.values_list("event_id", flat=True))

    with django_assert_max_num_queries(REPLAY):
        assert announcements.refund_event_emit(refund) is None
    with django_assert_max_num_queries(REPLAY):
        assert announcements.bag_refund_events_emit(bag, refunded_amount=5000) == []

    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == written
    assert WebhookDelivery.objects.count() == 3


def test_a_change_whose_first_event_exists_writes_only_the_missing_one():
    bag = refunded_bag()
    WebhookEvent.objects.create(
        app=bag.order.app,
        order=bag.order,
        bag=bag,
        event_type=EventType.ORDER_REFUNDED,
        sequence=1,
        dedupe_key=f"bag:{bag.pk}:ORDER_REFUNDED:11300",
        body="{}",
    )

    (updated,) = announcements.bag_refund_events_emit(bag, refunded_amount=11300)

    assert (updated.event_type, updated.sequence) == (EventType.ORDER_UPDATED, 2)


# --- the cheap way renders what the API renders ----------------------------------------------------


@pytest.mark.parametrize("with_everything", [False, True], ids=["bare refund", "skus errors reversals"])
def test_a_refund_events_body_is_the_refund_as_the_api_returns_it(api_client, channel, with_everything):
    order = OrderFactory(app=channel.app)
    PaymentTransactionFactory(order=order)
    bag = BagFactory(order=order)
    if with_everything:
        refund = refund_with_skus(bag, lines=3, status=RefundStatus.FAILED, shipping_amount=500)
        RefundErrorFactory(refund=refund)
        RefundErrorFactory(refund=refund, error_code=3002, error_message="Another.")
        TransferReversalFactory(refund=refund, gateway_reversal_id="trr_a")
        # Not made at Stripe yet: not listed.
        TransferReversalFactory(refund=refund, gateway_reversal_id=None, transfer__recipient=Recipient.DEVELOPER)
    else:
        refund = RefundFactory(bag=bag)

    event = announcements.refund_event_emit(refund)

    response = api_client.get(f"/v1/orders/{order.pk}/refunds/{refund.pk}", headers=channel.headers)
    assert response.status_code == 200
    assert json.loads(event.body) == response.json()
    assert bool(response.json()["errors"]) is with_everything


def test_an_order_events_body_is_the_full_order_as_its_serializer_renders_it():
    bag = refunded_bag(bags_in_order=2, skus_per_bag=3)

    event, _ = announcements.bag_refund_events_emit(bag, refunded_amount=11300)

    # Loaded plainly: bags and SKUs in id order, each SKU's bag and order read on its own.
    order = Order.objects.get(pk=bag.order_id)
    bags = list(Bag.objects.filter(order=order).order_by("id"))
    plain = representation.order_representation(order) | {"bags": representation.bags_representation(bags)}
    assert json.loads(event.body) == json.loads(services.payload_json(plain))
    assert [len(b["skus"]) for b in json.loads(event.body)["bags"]] == [3, 3]

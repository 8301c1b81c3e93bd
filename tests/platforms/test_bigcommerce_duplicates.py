"""BigCommerce duplicates: the same hook again, the same refund under a new hash, and in parallel (PostgreSQL)."""

import pytest
import responses

from platforms.models import InboundEvent
from refunds.models import Refund
from tests.parallel import run_in_parallel
from tests.platforms.bigcommerce_store import (
    ORDER_URL,
    REFUND_CREATED,
    REFUNDS_URL,
    STATUS_UPDATED,
    mock_api,
    order,
    partial_refund,
    refunds_body,
    status_to,
)
from tests.platforms.delivery import deliver


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

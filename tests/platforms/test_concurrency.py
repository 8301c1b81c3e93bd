"""Parallel deliveries on PostgreSQL: real transactions, one connection per thread."""

import pytest

from platforms.models import InboundEvent
from refunds.models import Refund
from tests.parallel import run_in_parallel
from tests.platforms.delivery import deliver, fixture_json

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_same_event_three_times_in_parallel_is_stored_and_refunded_once(shopify_store):
    def refunds_create():
        return deliver(shopify_store, "refunds_create", event_id="parallel").response.status_code

    assert run_in_parallel(refunds_create, refunds_create, refunds_create) == [200, 200, 200]
    assert InboundEvent.objects.count() == 1
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.external_id, refund.amount) == ("929361462", 4820)


def test_refunds_create_and_orders_cancelled_in_parallel_yield_one_refund(shopify_store):
    refund_body = fixture_json("shopify", "orders_cancelled_with_refund.json")["refunds"][0]

    def deliver_refund():
        return deliver(shopify_store, refund_body, topic="refunds/create", event_id="r").response.status_code

    def deliver_cancel():
        return deliver(shopify_store, "orders_cancelled_with_refund", event_id="c").response.status_code

    assert run_in_parallel(deliver_refund, deliver_cancel, deliver_refund) == [200, 200, 200]
    assert InboundEvent.objects.count() == 2
    refund = Refund.objects.get()
    assert (refund.external_id, refund.amount) == ("929361463", 11800)
    shopify_store.mug.refresh_from_db()
    assert shopify_store.mug.quantity_refunded == 2

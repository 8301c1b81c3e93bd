"""Parallel deliveries on PostgreSQL: real transactions, one connection per thread."""

import json

import pytest
from django.test import Client

from platforms.models import InboundEvent
from refunds.models import Refund
from tests.parallel import run_in_parallel
from tests.platforms.conftest import fixture_json, fixture_text, shopify_post

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_same_event_three_times_in_parallel_is_stored_and_refunded_once(shopify_store):
    body = fixture_text("shopify", "refunds_create.json").encode()

    def deliver():
        return shopify_post(Client(), shopify_store, body, topic="refunds/create", webhook_id="parallel").status_code

    assert run_in_parallel(deliver, deliver, deliver) == [200, 200, 200]
    assert InboundEvent.objects.count() == 1
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    refund = Refund.objects.get()
    assert (refund.external_id, refund.amount) == ("929361462", 4820)


def test_refunds_create_and_orders_cancelled_in_parallel_yield_one_refund(shopify_store):
    cancelled = fixture_text("shopify", "orders_cancelled_with_refund.json").encode()
    refund_body = json.dumps(fixture_json("shopify", "orders_cancelled_with_refund.json")["refunds"][0]).encode()

    def deliver_refund():
        return shopify_post(Client(), shopify_store, refund_body, topic="refunds/create", webhook_id="r").status_code

    def deliver_cancel():
        return shopify_post(Client(), shopify_store, cancelled, topic="orders/cancelled", webhook_id="c").status_code

    assert run_in_parallel(deliver_refund, deliver_cancel, deliver_refund) == [200, 200, 200]
    assert InboundEvent.objects.count() == 2
    refund = Refund.objects.get()
    assert (refund.external_id, refund.amount) == ("929361463", 11800)
    shopify_store.mug.refresh_from_db()
    assert shopify_store.mug.quantity_refunded == 2

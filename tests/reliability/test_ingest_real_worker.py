"""Webhook ingest under a real Celery worker (issue #20 item 2): the receiver stores the delivery in
one statement and publishes its processing with violet_refunds.publishing (one LPUSH, not
apply_async); a prefork worker consuming every role's queue receives that message and processes the
event, and a repeated delivery publishes nothing.
"""

import pytest

from platforms import tasks as platform_tasks
from platforms.models import InboundEvent, Platform
from refunds.models import Refund
from tests.factories import BagFactory, MerchantFactory, OrderSkuFactory, StoreConnectionFactory
from tests.platforms.delivery import SHOPIFY_SECRET, post_webhook
from tests.reliability.workers import wait_for
from violet_refunds import publishing

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
]


class _Store:
    """What tests.platforms.delivery needs: the Shopify fixtures' merchant, connection and bag."""

    def __init__(self):
        self.merchant = MerchantFactory(platform=Platform.SHOPIFY)
        self.connection = StoreConnectionFactory(
            merchant=self.merchant,
            webhook_secret=SHOPIFY_SECRET,
            credentials={"shop_domain": "blue-mug.myshopify.com", "access_token": "shpat_test"},
        )
        self.bag = BagFactory(
            merchant=self.merchant, external_id="450789469", sub_total=10000, shipping_total=1000, tax_total=800
        )
        OrderSkuFactory(bag=self.bag, external_id="466157049", sku_id="MUG-BLUE", quantity=2, price=4000)
        OrderSkuFactory(bag=self.bag, external_id="518995019", sku_id="TOWEL-1", quantity=1, price=2000)

    def url(self) -> str:
        return f"/webhooks/shopify/{self.connection.public_id}/"


def _refuse_apply_async(*args, **kwargs):
    raise AssertionError("the receiver published with apply_async, not violet_refunds.publishing")


def test_a_worker_processes_the_event_the_receiver_published_with_one_lpush(start_worker, monkeypatch):
    store = _Store()
    publishing.publishing_reset()
    monkeypatch.setattr(platform_tasks.process_inbound_event._get_current_object(), "apply_async", _refuse_apply_async)
    worker = start_worker()

    response = post_webhook(store, "refunds_create", event_id="wh-worker-1")
    duplicate = post_webhook(store, "refunds_create", event_id="wh-worker-1")

    assert (response.status_code, response.json()["status"]) == (200, "received")
    assert (duplicate.status_code, duplicate.json()["status"]) == (200, "duplicate")
    event = InboundEvent.objects.get(platform=Platform.SHOPIFY, event_id="wh-worker-1")
    wait_for(lambda: InboundEvent.objects.get(pk=event.pk).status == InboundEvent.Status.PROCESSED, worker=worker)
    event.refresh_from_db()
    refund = Refund.objects.get(bag=store.bag)
    assert refund.inbound_event_id == event.pk
    # The worker ran the task once for the one stored event: one message for two deliveries.
    wait_for(lambda: "process_inbound_event[" in worker.log() and " succeeded " in worker.log(), worker=worker)
    assert event.attempts == 1
    runs = [line for line in worker.log().splitlines() if "process_inbound_event[" in line and "succeeded" in line]
    assert len(runs) == 1, worker.log_tail()
    assert InboundEvent.objects.count() == 1
    publishing.publishing_reset()

"""Shopify rules end to end: signed fixture -> /webhooks/shopify/<id>/ -> InboundEvent -> Refund rows."""

from platforms.models import InboundEvent
from refunds.models import Refund, RefundSource
from tests.platforms.delivery import deliver, fixture_json, fixture_text


def _refund_skus(refund):
    return {line.order_sku.external_id: (line.quantity_refunded, line.amount_refunded) for line in refund.skus.all()}


def test_refunds_create_records_the_refund_with_its_parts_and_lines(shopify_store):
    response = deliver(shopify_store, "refunds_create", event_id="wh-1").response

    assert response.status_code == 200
    assert response.json() == {"status": "received", "event_id": "wh-1"}
    refund = Refund.objects.get(bag=shopify_store.bag)
    assert refund.external_id == "929361462"
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (4820, 4000, 500, 320)
    assert refund.refund_currency == "USD"
    assert refund.source == RefundSource.PLATFORM_WEBHOOK
    assert refund.reason == "Customer returned one mug"
    assert refund.restock_items is True
    assert _refund_skus(refund) == {"466157049": (1, 4000)}
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.PROCESSED
    assert refund.inbound_event == event
    assert event.body == fixture_text("shopify", "refunds_create.json")  # exactly as received
    assert event.headers["X-Shopify-Event-Id"] == "evt-wh-1"
    assert "Recorded refund" in event.outcome


def test_cancel_with_refund_now_records_the_full_refund(shopify_store):
    response = deliver(shopify_store, "orders_cancelled_with_refund", event_id="wh-c1").response

    assert response.status_code == 200
    refund = Refund.objects.get(bag=shopify_store.bag)
    assert refund.external_id == "929361463"
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        11800,
        10000,
        1000,
        800,
    )
    assert refund.reason_code == "CUSTOMER"
    assert _refund_skus(refund) == {"466157049": (2, 8000), "518995019": (1, 2000)}
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED


def test_cancel_without_refund_moves_no_money_and_is_ignored_with_the_reason(shopify_store):
    response = deliver(shopify_store, "orders_cancelled_without_refund", event_id="wh-c2").response

    assert response.status_code == 200
    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "without a refund" in event.outcome
    assert "Refund payments NOW" in event.outcome


def _deliver_the_full_refund_as_refunds_create(store, event_id):
    # The refunds/create delivery of the refund that "Refund payments now" made with the cancellation.
    refund = fixture_json("shopify", "orders_cancelled_with_refund.json")["refunds"][0]
    return deliver(store, refund, topic="refunds/create", event_id=event_id)


def test_refunds_create_then_orders_cancelled_yield_one_refund(shopify_store):
    _deliver_the_full_refund_as_refunds_create(shopify_store, "a")
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="b")

    refund = Refund.objects.get(bag=shopify_store.bag)
    assert (refund.external_id, refund.amount) == ("929361463", 11800)
    statuses = dict(InboundEvent.objects.values_list("event_id", "status"))
    assert statuses == {"a": InboundEvent.Status.PROCESSED, "b": InboundEvent.Status.IGNORED}
    assert "already recorded" in InboundEvent.objects.get(event_id="b").outcome


def test_orders_cancelled_then_refunds_create_yield_one_refund(shopify_store):
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="b")
    _deliver_the_full_refund_as_refunds_create(shopify_store, "a")

    refund = Refund.objects.get(bag=shopify_store.bag)
    assert (refund.external_id, refund.amount) == ("929361463", 11800)
    assert refund.inbound_event.event_id == "b"


def test_partial_refund_then_cancel_with_the_rest_records_both_and_never_more(shopify_store):
    order = fixture_json("shopify", "orders_cancelled_with_refund.json")
    # The order as Shopify shows it after both refunds: the partial one and the rest with the cancel.
    rest = order["refunds"][0]
    rest["refund_line_items"][0]["quantity"] = 1
    rest["refund_line_items"][0]["subtotal_set"]["presentment_money"]["amount"] = "40.00"
    rest["refund_line_items"][0]["total_tax_set"]["presentment_money"]["amount"] = "3.20"
    rest["order_adjustments"][0]["amount_set"]["presentment_money"]["amount"] = "-5.00"
    rest["transactions"][0]["amount"] = "69.80"
    order["refunds"] = [fixture_json("shopify", "refunds_create.json"), rest]
    deliver(shopify_store, "refunds_create", event_id="p1")
    deliver(shopify_store, order, topic="orders/cancelled", event_id="p2")

    refunds = {r.external_id: r for r in Refund.objects.filter(bag=shopify_store.bag)}
    assert set(refunds) == {"929361462", "929361463"}
    assert refunds["929361463"].amount == 6980
    assert sum(r.amount for r in refunds.values()) == shopify_store.bag.total
    shopify_store.mug.refresh_from_db()
    assert shopify_store.mug.quantity_refunded == 2


def test_duplicate_delivery_answers_200_and_does_nothing(shopify_store):
    first = deliver(shopify_store, "refunds_create", event_id="dup")
    second = deliver(shopify_store, "refunds_create", event_id="dup")

    assert second.response.status_code == 200
    assert second.response.json()["status"] == "duplicate"
    assert len(second.enqueued) == 0 < len(first.enqueued)  # nothing enqueued for the duplicate
    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1


def test_stale_retry_of_an_old_refund_under_a_new_delivery_id_records_nothing_new(shopify_store):
    deliver(shopify_store, "refunds_create", event_id="first")
    retry = deliver(shopify_store, "refunds_create", event_id="other-subscription")

    assert Refund.objects.count() == 1
    assert retry.event.status == InboundEvent.Status.IGNORED


def test_refund_for_an_order_we_do_not_know_awaits_its_order(shopify_store):
    deliver(shopify_store, "refunds_create", changes={"order_id": 999999}, event_id="x")

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert (event.status, event.order_id) == (InboundEvent.Status.AWAITING_ORDER, "999999")
    assert "999999 is not (yet) a bag" in event.outcome


def test_refund_without_a_successful_transaction_records_nothing(shopify_store):
    deliver(shopify_store, "refunds_create", changes={"transactions.0.status": "pending"}, event_id="pend")

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "returned no money" in event.outcome


def test_unknown_topic_is_ignored(shopify_store):
    deliver(shopify_store, body=b'{"id": 1}', topic="products/update", event_id="t")

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "products/update" in event.outcome


def test_refund_of_an_already_fully_refunded_bag_is_ignored(shopify_store):
    deliver(shopify_store, "orders_cancelled_with_refund", event_id="full")
    late = deliver(shopify_store, "refunds_create", event_id="late")

    assert list(Refund.objects.values_list("external_id", flat=True)) == ["929361463"]
    assert late.event.status == InboundEvent.Status.IGNORED
    assert "already fully refunded" in late.event.outcome


def test_refund_shipping_lines_are_read_when_present(shopify_store):
    shipping_line = {
        "id": 11,
        "shipping_line_id": 369256396,
        "subtotal_amount_set": {
            "shop_money": {"amount": "5.00", "currency_code": "USD"},
            "presentment_money": {"amount": "5.00", "currency_code": "USD"},
        },
        "tax_amount_set": {
            "shop_money": {"amount": "0.40", "currency_code": "USD"},
            "presentment_money": {"amount": "0.40", "currency_code": "USD"},
        },
    }
    deliver(
        shopify_store,
        "refunds_create",
        changes={
            "order_adjustments": [],
            "refund_shipping_lines": [shipping_line],
            "transactions.0.amount": "48.60",
        },
        event_id="sl",
    )

    refund = Refund.objects.get()
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (4860, 4000, 500, 360)
    assert refund.shipping_tax_amount == 40


def test_money_returned_below_the_line_value_puts_the_difference_on_sub_total(shopify_store):
    # 45.20: 3.00 less than the line + shipping + tax.
    deliver(shopify_store, "refunds_create", changes={"transactions.0.amount": "45.20"}, event_id="d")

    refund = Refund.objects.get()
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (4520, 3700, 500, 320)


def test_delivery_naming_another_shop_is_ignored(shopify_store):
    # Same app secret for every shop: a genuine delivery for another shop posted to this shop's URL.
    other_shop = {"X-Shopify-Shop-Domain": "someone-else.myshopify.com"}
    response = deliver(shopify_store, "refunds_create", event_id="o", headers=other_shop).response

    assert response.status_code == 200
    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "someone-else.myshopify.com" in event.outcome

"""Shopify rules end to end: signed fixture -> /webhooks/shopify/<id>/ -> InboundEvent -> Refund rows."""

import json

from platforms.models import InboundEvent
from refunds.models import Refund, RefundSource
from tests.platforms.conftest import fixture_json, fixture_text, shopify_post


def _refund_skus(refund):
    return {line.order_sku.external_id: (line.quantity_refunded, line.amount_refunded) for line in refund.skus.all()}


def test_refunds_create_records_the_refund_with_its_parts_and_lines(
    client, shopify_store, django_capture_on_commit_callbacks
):
    body = fixture_text("shopify", "refunds_create.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="wh-1")

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
    assert event.body == body.decode()  # exactly as received
    assert event.headers["X-Shopify-Event-Id"] == "evt-wh-1"
    assert "Recorded refund" in event.outcome


def test_cancel_with_refund_now_records_the_full_refund(client, shopify_store, django_capture_on_commit_callbacks):
    body = fixture_text("shopify", "orders_cancelled_with_refund.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = shopify_post(client, shopify_store, body, topic="orders/cancelled", webhook_id="wh-c1")

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


def test_cancel_without_refund_moves_no_money_and_is_ignored_with_the_reason(
    client, shopify_store, django_capture_on_commit_callbacks
):
    body = fixture_text("shopify", "orders_cancelled_without_refund.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = shopify_post(client, shopify_store, body, topic="orders/cancelled", webhook_id="wh-c2")

    assert response.status_code == 200
    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "without a refund" in event.outcome
    assert "Refund payments NOW" in event.outcome


def _full_refund_as_refunds_create() -> bytes:
    # The refunds/create delivery of the refund that "Refund payments now" made with the cancellation.
    return json.dumps(fixture_json("shopify", "orders_cancelled_with_refund.json")["refunds"][0]).encode()


def test_refunds_create_then_orders_cancelled_yield_one_refund(
    client, shopify_store, django_capture_on_commit_callbacks
):
    cancelled = fixture_text("shopify", "orders_cancelled_with_refund.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, _full_refund_as_refunds_create(), topic="refunds/create", webhook_id="a")
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, cancelled, topic="orders/cancelled", webhook_id="b")

    refund = Refund.objects.get(bag=shopify_store.bag)
    assert (refund.external_id, refund.amount) == ("929361463", 11800)
    statuses = dict(InboundEvent.objects.values_list("event_id", "status"))
    assert statuses == {"a": InboundEvent.Status.PROCESSED, "b": InboundEvent.Status.IGNORED}
    assert "already recorded" in InboundEvent.objects.get(event_id="b").outcome


def test_orders_cancelled_then_refunds_create_yield_one_refund(
    client, shopify_store, django_capture_on_commit_callbacks
):
    cancelled = fixture_text("shopify", "orders_cancelled_with_refund.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, cancelled, topic="orders/cancelled", webhook_id="b")
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, _full_refund_as_refunds_create(), topic="refunds/create", webhook_id="a")

    refund = Refund.objects.get(bag=shopify_store.bag)
    assert (refund.external_id, refund.amount) == ("929361463", 11800)
    assert refund.inbound_event.event_id == "b"


def test_partial_refund_then_cancel_with_the_rest_records_both_and_never_more(
    client, shopify_store, django_capture_on_commit_callbacks
):
    partial = fixture_text("shopify", "refunds_create.json").encode()
    order = fixture_json("shopify", "orders_cancelled_with_refund.json")
    # The order as Shopify shows it after both refunds: the partial one and the rest with the cancel.
    rest = order["refunds"][0]
    rest["refund_line_items"][0]["quantity"] = 1
    rest["refund_line_items"][0]["subtotal_set"]["presentment_money"]["amount"] = "40.00"
    rest["refund_line_items"][0]["total_tax_set"]["presentment_money"]["amount"] = "3.20"
    rest["order_adjustments"][0]["amount_set"]["presentment_money"]["amount"] = "-5.00"
    rest["transactions"][0]["amount"] = "69.80"
    order["refunds"] = [json.loads(partial), rest]
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, partial, topic="refunds/create", webhook_id="p1")
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, json.dumps(order).encode(), topic="orders/cancelled", webhook_id="p2")

    refunds = {r.external_id: r for r in Refund.objects.filter(bag=shopify_store.bag)}
    assert set(refunds) == {"929361462", "929361463"}
    assert refunds["929361463"].amount == 6980
    assert sum(r.amount for r in refunds.values()) == shopify_store.bag.total
    shopify_store.mug.refresh_from_db()
    assert shopify_store.mug.quantity_refunded == 2


def test_duplicate_delivery_answers_200_and_does_nothing(client, shopify_store, django_capture_on_commit_callbacks):
    body = fixture_text("shopify", "refunds_create.json").encode()
    with django_capture_on_commit_callbacks(execute=True) as first:
        shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="dup")
    with django_capture_on_commit_callbacks(execute=True) as second:
        response = shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="dup")

    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert len(second) == 0 < len(first)  # nothing enqueued for the duplicate
    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1


def test_stale_retry_of_an_old_refund_under_a_new_delivery_id_records_nothing_new(
    client, shopify_store, django_capture_on_commit_callbacks
):
    body = fixture_text("shopify", "refunds_create.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="first")
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, body, topic="refunds/create", webhook_id="other-subscription")

    assert Refund.objects.count() == 1
    assert InboundEvent.objects.get(event_id="other-subscription").status == InboundEvent.Status.IGNORED


def test_refund_for_an_order_we_do_not_know_is_ignored(client, shopify_store, django_capture_on_commit_callbacks):
    payload = fixture_json("shopify", "refunds_create.json")
    payload["order_id"] = 999999
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, json.dumps(payload).encode(), topic="refunds/create", webhook_id="x")

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "999999 is not a known order" in event.outcome


def test_refund_without_a_successful_transaction_records_nothing(
    client, shopify_store, django_capture_on_commit_callbacks
):
    payload = fixture_json("shopify", "refunds_create.json")
    payload["transactions"][0]["status"] = "pending"
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, json.dumps(payload).encode(), topic="refunds/create", webhook_id="pend")

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "returned no money" in event.outcome


def test_unknown_topic_is_ignored(client, shopify_store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, b'{"id": 1}', topic="products/update", webhook_id="t")

    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "products/update" in event.outcome


def test_refund_of_an_already_fully_refunded_bag_is_ignored(client, shopify_store, django_capture_on_commit_callbacks):
    cancelled = fixture_text("shopify", "orders_cancelled_with_refund.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, cancelled, topic="orders/cancelled", webhook_id="full")
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(
            client, shopify_store, fixture_text("shopify", "refunds_create.json").encode(),
            topic="refunds/create", webhook_id="late",
        )  # fmt: skip

    assert list(Refund.objects.values_list("external_id", flat=True)) == ["929361463"]
    event = InboundEvent.objects.get(event_id="late")
    assert event.status == InboundEvent.Status.IGNORED
    assert "already fully refunded" in event.outcome


def test_refund_shipping_lines_are_read_when_present(client, shopify_store, django_capture_on_commit_callbacks):
    payload = fixture_json("shopify", "refunds_create.json")
    payload["order_adjustments"] = []
    payload["refund_shipping_lines"] = [
        {
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
    ]
    payload["transactions"][0]["amount"] = "48.60"
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, json.dumps(payload).encode(), topic="refunds/create", webhook_id="sl")

    refund = Refund.objects.get()
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (4860, 4000, 500, 360)
    assert refund.shipping_tax_amount == 40


def test_money_returned_below_the_line_value_puts_the_difference_on_sub_total(
    client, shopify_store, django_capture_on_commit_callbacks
):
    payload = fixture_json("shopify", "refunds_create.json")
    payload["transactions"][0]["amount"] = "45.20"  # 3.00 less than the line + shipping + tax
    with django_capture_on_commit_callbacks(execute=True):
        shopify_post(client, shopify_store, json.dumps(payload).encode(), topic="refunds/create", webhook_id="d")

    refund = Refund.objects.get()
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (4520, 3700, 500, 320)


def test_delivery_naming_another_shop_is_ignored(client, shopify_store, django_capture_on_commit_callbacks):
    # Same app secret for every shop: a genuine delivery for another shop posted to this shop's URL.
    body = fixture_text("shopify", "refunds_create.json").encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = shopify_post(
            client, shopify_store, body, topic="refunds/create", webhook_id="o",
            headers={"X-Shopify-Shop-Domain": "someone-else.myshopify.com"},
        )  # fmt: skip

    assert response.status_code == 200
    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "someone-else.myshopify.com" in event.outcome

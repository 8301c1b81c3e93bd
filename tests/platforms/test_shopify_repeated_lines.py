"""Shopify refunds whose `refund_line_items[]` name one order line twice (restocked at two locations,
issue #15 item 3): one refund, the line's quantities and amounts added up, on delivery and on replay."""

import copy

from platforms.adapters.shopify import parse_refund
from platforms.models import InboundEvent
from platforms.services import events_replay
from refunds.models import Refund
from tests.factories import InboundEventFactory
from tests.platforms.delivery import deliver, fixture_json, fixture_text

TWO_LOCATIONS = "refunds_create_two_locations"  # refunds_create.json with the mug line at two locations
MUG_LINE = "466157049"


def _refund_skus(refund):
    return {line.order_sku.external_id: (line.quantity_refunded, line.amount_refunded) for line in refund.skus.all()}


def test_the_fixture_names_one_line_item_twice_at_two_locations():
    lines = fixture_json("shopify", f"{TWO_LOCATIONS}.json")["refund_line_items"]
    assert [(line["line_item_id"], line["location_id"], line["quantity"]) for line in lines] == [
        (466157049, 24826418, 1),
        (466157049, 48752903, 1),
    ]


def test_repeated_lines_record_one_refund_with_the_summed_quantity_and_amounts(shopify_store):
    delivery = deliver(shopify_store, TWO_LOCATIONS, topic="refunds/create", event_id="wh-two-locations")

    assert delivery.response.status_code == 200
    event = delivery.event
    assert event.status == InboundEvent.Status.PROCESSED, event.outcome + event.error
    refund = Refund.objects.get(bag=shopify_store.bag)
    assert refund.external_id == "929361470"
    # 2 mugs (2 × 40.00) + their tax (2 × 3.20) + 5.00 shipping = 91.40, the refund transaction.
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (9140, 8000, 500, 640)
    assert _refund_skus(refund) == {MUG_LINE: (2, 8000)}


def test_replay_of_an_event_that_failed_on_repeated_lines_records_it(shopify_store):
    # Stored before the adapter added repeated lines up: FAILED "order_sku_id ... is listed twice".
    event = InboundEventFactory(
        connection=shopify_store.connection,
        event_id="wh-failed-before",
        topic="refunds/create",
        headers={"X-Shopify-Shop-Domain": "blue-mug.myshopify.com"},
        body=fixture_text("shopify", f"{TWO_LOCATIONS}.json"),
        status=InboundEvent.Status.FAILED,
        error=f"ValidationFailed (validation_failed): order_sku_id {shopify_store.mug.pk} is listed twice.",
    )

    counts = events_replay([event])
    again = events_replay([event])

    assert counts == {InboundEvent.Status.PROCESSED: 1}
    assert again == {InboundEvent.Status.PROCESSED: 1}  # a second replay records nothing more
    event.refresh_from_db()
    assert event.error == ""
    refund = Refund.objects.get(bag=shopify_store.bag)
    assert refund.amount == 9140
    assert _refund_skus(refund) == {MUG_LINE: (2, 8000)}


def test_parse_refund_adds_up_lines_sharing_a_line_item_in_order_payloads_too():
    # orders/cancelled carries the same Refund objects in refunds[]: the same rule applies.
    refund = copy.deepcopy(fixture_json("shopify", "orders_cancelled_with_refund.json")["refunds"][0])
    mug = refund["refund_line_items"][0]
    split = copy.deepcopy(mug)
    for line, quantity in ((mug, 1), (split, 1)):
        line["quantity"] = quantity
        line["subtotal_set"]["presentment_money"]["amount"] = "40.00"
        line["total_tax_set"]["presentment_money"]["amount"] = "3.20"
    split["id"], split["location_id"] = 1058498399, 48752903
    refund["refund_line_items"].insert(1, split)

    parsed = parse_refund(refund, order_currency="USD")

    assert [(line.line_item_external_id, line.quantity, line.amount) for line in parsed.lines] == [
        (MUG_LINE, 2, 8000),
        ("518995019", 1, 2000),
    ]
    assert (parsed.parts.sub_total, parsed.parts.tax) == (10000, 800)

"""Wix rules end to end: JWT signed with the connection's key -> receiver -> Refund rows."""

import datetime as dt

import pytest

from platforms.adapters.wix import WIX_CANCEL_IS_REFUND_BEFORE
from platforms.models import InboundEvent, Platform
from refunds.models import Refund, RefundSource
from tests.platforms.conftest import make_store
from tests.platforms.delivery import deliver, fixture_json

CANCELED_ORDER_ID = "2f7c8a9e-1b3d-4e5f-a6b7-c8d9e0f1a2b3"
REFUNDED_ORDER_ID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
MUG_LINE = "9c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b"
TOWEL_LINE = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"


def _store(wix_keys, order_id, placed_at):
    return make_store(
        Platform.WIX,
        order_id=order_id,
        line_ids=(MUG_LINE, TOWEL_LINE),
        webhook_secret=wix_keys[1],
        credentials={"api_key": "IST.test-key-0123456789", "account_id": "a", "site_id": "s"},
        placed_at=placed_at,
    )


ORDER = "data.actionEvent.body.order"  # where the canceled event carries the order
REFUND = "data.actionEvent.body.refund"  # where refund_completed carries the refund


def _deliver_canceled(store, placed_at: str, **options):
    """The captured order_canceled event for an order created at `placed_at`, signed and processed."""
    changes = {f"{ORDER}.createdDate": placed_at, **options.pop("changes", {})}
    return deliver(store, "order_canceled", changes=changes, **options)


def test_cutoff_is_the_seed_date():
    assert dt.datetime(2024, 4, 22, tzinfo=dt.UTC) == WIX_CANCEL_IS_REFUND_BEFORE


def test_cancelling_an_order_placed_before_the_cutoff_refunds_everything(db, wix_keys):
    store = _store(wix_keys, CANCELED_ORDER_ID, dt.datetime(2024, 3, 14, 16, 20, tzinfo=dt.UTC))
    response = _deliver_canceled(store, "2024-03-14T16:20:05.000Z").response

    assert response.status_code == 200
    refund = Refund.objects.get(bag=store.bag)
    assert refund.external_id == f"cancel:{CANCELED_ORDER_ID}"
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        11800,
        10000,
        1000,
        800,
    )
    assert refund.source == RefundSource.PLATFORM_WEBHOOK
    assert {(s.order_sku.external_id, s.quantity_refunded) for s in refund.skus.all()} == {
        (MUG_LINE, 2),
        (TOWEL_LINE, 1),
    }
    event = InboundEvent.objects.get()
    assert (event.status, event.topic) == (InboundEvent.Status.PROCESSED, "wix.ecom.v1.order/canceled")


def test_unfulfill_then_cancel_of_an_old_order_is_a_refund_too(db, wix_keys):
    # The fixture's activities show FULFILLED -> UNFULFILLED -> CANCELED (seed: "Previously Fulfilled Order").
    store = _store(wix_keys, CANCELED_ORDER_ID, dt.datetime(2024, 4, 1, tzinfo=dt.UTC))
    envelope = fixture_json("wix", "order_canceled.json")
    assert [a["type"] for a in envelope["data"]["actionEvent"]["body"]["order"]["activities"]] == [
        "ORDER_FULFILLED",
        "ORDER_UNFULFILLED",
        "ORDER_CANCELED",
    ]
    _deliver_canceled(store, "2024-04-01T08:00:00.000Z")

    assert Refund.objects.get().amount == 11800


def test_cancelling_an_order_placed_on_or_after_the_cutoff_moves_no_money(db, wix_keys):
    store = _store(wix_keys, CANCELED_ORDER_ID, dt.datetime(2024, 4, 22, tzinfo=dt.UTC))
    _deliver_canceled(store, "2024-04-22T00:00:00.000Z")

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "on/after 2024-04-22" in event.outcome


def test_refund_completed_of_a_new_order_records_the_refund(db, wix_keys):
    store = _store(wix_keys, REFUNDED_ORDER_ID, dt.datetime(2026, 2, 27, tzinfo=dt.UTC))
    response = deliver(store, "refund_completed").response

    assert response.status_code == 200
    refund = Refund.objects.get(bag=store.bag)
    assert refund.external_id == "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
    # 53.20 = one mug (40.00 at the bag's price) + the shipping left (10.00) + the rest as tax (3.20).
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        5320,
        4000,
        1000,
        320,
    )
    assert refund.reason == "Arrived damaged"
    assert {(s.order_sku.external_id, s.quantity_refunded) for s in refund.skus.all()} == {(MUG_LINE, 1)}
    assert InboundEvent.objects.get().topic == "wix.ecom.v1.order_transactions/refund_completed"


def test_failed_refund_transactions_record_nothing(db, wix_keys):
    store = _store(wix_keys, REFUNDED_ORDER_ID, dt.datetime(2026, 2, 27, tzinfo=dt.UTC))
    deliver(store, "refund_completed", changes={f"{REFUND}.transactions.0.refundStatus": "FAILED"})

    assert not Refund.objects.exists()
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.IGNORED
    assert "returned no money" in event.outcome


def test_amount_only_refund_is_divided_pro_rata(db, wix_keys):
    store = _store(wix_keys, REFUNDED_ORDER_ID, dt.datetime(2026, 2, 27, tzinfo=dt.UTC))
    deliver(
        store,
        "refund_completed",
        changes={
            f"{REFUND}.details": {"items": [], "shippingIncluded": False, "reason": "Goodwill"},
            f"{REFUND}.transactions.0.amount.amount": "11.80",
        },
    )

    refund = Refund.objects.get()
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (1180, 1000, 100, 80)
    assert not refund.skus.exists()


def test_standard_refund_then_cancel_of_an_old_order_refunds_only_what_is_left(db, wix_keys):
    store = _store(wix_keys, CANCELED_ORDER_ID, dt.datetime(2024, 3, 14, tzinfo=dt.UTC))
    of_this_order = {"data.entityId": CANCELED_ORDER_ID, "data.actionEvent.body.orderId": CANCELED_ORDER_ID}
    deliver(store, "refund_completed", changes=of_this_order)
    _deliver_canceled(store, "2024-03-14T16:20:05.000Z")

    amounts = dict(Refund.objects.values_list("external_id", "amount"))
    assert amounts == {"b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e": 5320, f"cancel:{CANCELED_ORDER_ID}": 11800 - 5320}


@pytest.mark.parametrize(
    ("fqdn", "slug"),
    [("wix.ecom.v1.order", "fulfillment_status_updated"), ("wix.stores.v1.product", "created")],
)
def test_other_events_are_ignored(db, wix_keys, fqdn, slug):
    store = _store(wix_keys, CANCELED_ORDER_ID, dt.datetime(2024, 3, 14, tzinfo=dt.UTC))
    other_event = {"data.entityFqdn": fqdn, "data.slug": slug}
    assert _deliver_canceled(store, "2024-03-14T16:20:05.000Z", changes=other_event).response.status_code == 200

    assert not Refund.objects.exists()
    assert InboundEvent.objects.get().status == InboundEvent.Status.IGNORED


def test_duplicate_event_id_is_stored_once(db, wix_keys):
    store = _store(wix_keys, CANCELED_ORDER_ID, dt.datetime(2024, 3, 14, tzinfo=dt.UTC))
    for _ in range(2):
        assert _deliver_canceled(store, "2024-03-14T16:20:05.000Z").response.status_code == 200

    assert InboundEvent.objects.count() == 1
    assert Refund.objects.count() == 1

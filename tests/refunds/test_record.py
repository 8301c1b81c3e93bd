"""refund_record: validation, idempotency and what it writes."""

import pytest
from django.db import transaction

from refunds.models import BagStatus, OrderSku, Refund, RefundEvent, RefundSource, RefundStatus
from refunds.services import RefundSkuLine, refund_record
from tests.factories import BagFactory, OrderSkuFactory
from violet_refunds.exceptions import ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def bag():
    bag = BagFactory(sub_total=10000, shipping_total=500, tax_total=800)
    OrderSkuFactory(bag=bag, price=3000, quantity=2)
    OrderSkuFactory(bag=bag, price=4000, quantity=1)
    return bag


def record(bag, **kwargs):
    kwargs.setdefault("source", RefundSource.CHANNEL_API)
    kwargs.setdefault("actor", "test")
    return refund_record(bag=bag, **kwargs)


def test_nothing_given_refunds_everything_left_with_every_item(bag):
    result = record(bag, external_id="r1")
    refund = result.refund
    assert result.created
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (
        11300,
        10000,
        500,
        800,
    )
    assert refund.status == RefundStatus.PROCESSING
    assert refund.shipping_full_refund is True
    assert sorted(refund.skus.values_list("quantity_refunded", flat=True)) == [1, 2]
    assert list(OrderSku.objects.filter(bag=bag).values_list("quantity_refunded", flat=True)) == [2, 1]
    event = RefundEvent.objects.get(refund=refund, kind=RefundEvent.Kind.RECORDED)
    assert (event.kind, event.actor, event.to_status) == ("RECORDED", "test", "PROCESSING")


def test_amount_only_is_split_pro_rata_over_what_is_left(bag):
    refund = record(bag, amount=1130).refund
    assert (refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (1000, 50, 80)
    assert refund.skus.count() == 0


def test_sku_lines_make_the_sub_total_part(bag):
    sku = bag.skus.get(price=3000)
    refund = record(bag, skus=[RefundSkuLine(order_sku_id=sku.pk, quantity=1)], tax_amount=240).refund
    assert (refund.amount, refund.sub_total_amount, refund.tax_amount) == (3240, 3000, 240)
    sku.refresh_from_db()
    assert sku.quantity_refunded == 1


def test_same_external_id_returns_the_first_refund_and_writes_nothing(bag):
    # A platform's refund id: a repeated signal is the same refund, whatever its figures. (A client's
    # key with other figures is refused: tests/refunds/api/test_fingerprints.py.)
    first = record(bag, amount=1000, external_id="shopify-1", source=RefundSource.PLATFORM_WEBHOOK)
    again = record(bag, amount=5000, external_id="shopify-1", source=RefundSource.PLATFORM_WEBHOOK)
    assert not again.created and again.refund.pk == first.refund.pk
    assert Refund.objects.count() == 1


def test_same_request_key_returns_the_first_refund(bag):
    first = record(bag, amount=1000, request_key="idem-1")
    again = record(bag, amount=1000, request_key="idem-1")
    assert not again.created and again.refund.pk == first.refund.pk


def test_repeat_is_returned_even_when_the_bag_is_now_fully_refunded(bag):
    record(bag, external_id="full")
    assert not record(bag, external_id="full").created


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 11301}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"sub_total_amount": 10001}, "sub_total_amount"),
        ({"shipping_amount": 501}, "shipping_amount"),
        ({"tax_amount": 801}, "tax_amount"),
        ({"amount": 100, "sub_total_amount": 50}, "amount"),
        ({"currency": "EUR"}, "currency"),
        ({"reason_code": "NOPE"}, "reason_code"),
        ({"reason": "x" * 256}, "reason"),
        ({"shipping_tax_amount": 10, "tax_amount": 5}, "shipping_tax_amount"),
    ],
)
def test_invalid_amounts_are_rejected_and_write_nothing(bag, kwargs, field):
    with pytest.raises(ValidationFailed) as excinfo:
        record(bag, **kwargs)
    assert field in excinfo.value.field_errors
    assert Refund.objects.count() == 0


def test_quantity_above_what_is_left_is_rejected(bag):
    sku = bag.skus.get(price=3000)
    record(bag, skus=[RefundSkuLine(order_sku_id=sku.pk, quantity=2)])
    with pytest.raises(ValidationFailed) as excinfo:
        record(bag, skus=[RefundSkuLine(order_sku_id=sku.pk, quantity=1)])
    assert "exceeds the 0 left" in excinfo.value.field_errors["skus"][0]
    assert Refund.objects.count() == 1


def test_sku_of_another_bag_is_rejected(bag):
    other = OrderSkuFactory()
    with pytest.raises(ValidationFailed) as excinfo:
        record(bag, skus=[RefundSkuLine(order_sku_id=other.pk, quantity=1)])
    assert "does not belong" in excinfo.value.field_errors["skus"][0]


@pytest.mark.parametrize("status", [BagStatus.IN_PROGRESS, BagStatus.REFUNDED, BagStatus.REJECTED])
def test_non_refundable_bag_status_is_rejected(bag, status):
    bag.status = status
    bag.save()
    with pytest.raises(ValidationFailed) as excinfo:
        record(bag)
    assert "bag" in excinfo.value.field_errors
    assert Refund.objects.count() == 0


def test_canceled_bag_stays_refundable_because_cancel_is_the_refund_signal(bag):
    bag.status = BagStatus.CANCELED
    bag.save()
    assert record(bag, external_id=f"cancel:{bag.external_id}").created


def test_partial_refunds_cannot_exceed_the_bag(bag):
    record(bag, amount=10000)
    with pytest.raises(ValidationFailed):
        record(bag, amount=1301)
    assert record(bag, amount=1300).created


def test_processing_is_enqueued_only_after_commit(bag, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        record(bag, amount=100)
    # Processing, and (the bag's merchant having no connected store) the "mirror this refund" e-mail.
    assert len(callbacks) == 2


def test_rollback_after_record_enqueues_nothing(bag, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        record(bag, amount=100)
        raise RuntimeError("boom")
    assert callbacks == []
    assert Refund.objects.count() == 0

"""refund_record_platform: the platform says what was refunded; refunds decide the parts, once,
under the bag lock (what used to be platforms/services._record_amounts)."""

import pytest

from refunds.models import Refund, RefundSource
from refunds.services import PlatformRefundRequest, RefundSkuLine, refund_record_platform
from tests.factories import BagFactory, OrderSkuFactory
from violet_refunds.exceptions import ValidationFailed
from violet_refunds.money import AmountParts

pytestmark = pytest.mark.django_db


@pytest.fixture
def bag():
    """sub_total 10000 (2 x 5000), shipping 500, tax 800."""
    bag = BagFactory()
    OrderSkuFactory(bag=bag, price=5000, quantity=2)
    return bag


def record(bag, **fields):
    fields.setdefault("source", RefundSource.PLATFORM_WEBHOOK)
    request = PlatformRefundRequest(**fields)
    return refund_record_platform(bag=bag, request=request, actor="platform:test", enqueue=False)


def parts_of(refund: Refund) -> tuple[int, int, int]:
    return refund.sub_total_amount, refund.shipping_amount, refund.tax_amount


def test_no_amount_refunds_everything_left_with_its_items(bag):
    result = record(bag, external_id="cancel:1")
    assert result.created and result.notes == ()
    assert parts_of(result.refund) == (10000, 500, 800)
    assert [line.quantity_refunded for line in result.refund.skus.all()] == [2]


def test_a_repeat_returns_the_first_refund(bag):
    first = record(bag, external_id="r1", amount=1130)
    again = record(bag, external_id="r1", amount=9999)
    assert (again.refund.pk, again.created) == (first.refund.pk, False)


def test_a_fully_refunded_bag_records_nothing_and_says_so(bag):
    record(bag, external_id="all")
    result = record(bag, external_id="more", amount=100)
    assert (result.refund, result.created) == (None, False)
    assert result.notes == (f"bag {bag.pk} is already fully refunded, so more records nothing",)


def test_platform_parts_give_way_to_the_money_on_sub_total(bag):
    result = record(bag, external_id="r", amount=5200, parts=AmountParts(5000, 100, 200), shipping_tax=50)
    assert parts_of(result.refund) == (4900, 100, 200)
    assert (result.refund.amount, result.refund.shipping_tax_amount) == (5200, 50)


def test_lines_and_included_shipping_split_the_money(bag):
    sku = bag.skus.get()
    result = record(bag, external_id="r", amount=6000, skus=(RefundSkuLine(sku.pk, 1),), shipping_included=True)
    assert parts_of(result.refund) == (5000, 500, 500)
    assert result.notes == ()


def test_a_split_that_does_not_fit_falls_back_to_pro_rata_with_a_note(bag):
    sku = bag.skus.get()
    # One item at 5000 leaves 1000 of tax, more than the 800 left: the split does not fit.
    result = record(bag, external_id="r", amount=6000, skus=(RefundSkuLine(sku.pk, 1),))
    assert result.refund.amount == 6000
    assert sum(parts_of(result.refund)) == 6000
    assert not result.refund.skus.exists()
    assert result.notes == ("refund r: the platform's split does not fit, amount divided pro rata",)


def test_a_line_refunded_for_more_than_it_cost_is_refused_with_formatted_amounts(bag):
    sku = bag.skus.get()
    with pytest.raises(ValidationFailed) as refused:
        record(
            bag,
            external_id="over",
            amount=6000,
            parts=AmountParts(6000, 0, 0),
            skus=(RefundSkuLine(sku.pk, 1, amount=6000),),
        )
    assert refused.value.field_errors["skus"] == [
        f"amount_refunded 60.00 USD for order_sku_id {sku.pk} exceeds price x quantity (50.00 USD)."
    ]
    assert not Refund.objects.exists()

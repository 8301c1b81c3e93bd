"""Per-line "Amount refunded" on the refund page: the platform's amount where it gave one, else the
line's share of the refund's sub_total by price x quantity, the lines adding up to the cent."""

import pytest
from django.urls import reverse

from refunds.selectors import refund_sku_amounts
from tests.factories import BagFactory, OrderSkuFactory, RefundFactory, RefundSkuFactory

pytestmark = pytest.mark.django_db

# A line without an amount is stored with None (refunds.services.record), not the column's default 0.


def test_lines_without_an_amount_share_the_sub_total_by_price_and_quantity_to_the_cent():
    bag = BagFactory(sub_total=9000, discount_total=100)
    mug = OrderSkuFactory(bag=bag, price=2450, quantity=2)
    tee = OrderSkuFactory(bag=bag, price=4100, quantity=1)
    # The discount is shared across the lines, so the refund's sub_total is less than their prices.
    refund = RefundFactory(bag=bag, sub_total_amount=8900)
    mug_line = RefundSkuFactory(refund=refund, order_sku=mug, quantity_refunded=2, amount_refunded=None)
    tee_line = RefundSkuFactory(refund=refund, order_sku=tee, quantity_refunded=1, amount_refunded=None)

    amounts = refund_sku_amounts(refund)

    assert sum(amounts.values()) == 8900
    # 8900 x 4900 / 9000 = 4845.56 and 8900 x 4100 / 9000 = 4054.44: the left-over unit to the mug.
    assert amounts == {mug_line.pk: 4846, tee_line.pk: 4054}


def test_a_platform_amount_is_kept_and_the_other_lines_share_the_rest():
    bag = BagFactory()
    mug = OrderSkuFactory(bag=bag, price=2450)
    vase = OrderSkuFactory(bag=bag, price=6400)
    refund = RefundFactory(bag=bag, sub_total_amount=8000)
    mug_line = RefundSkuFactory(refund=refund, order_sku=mug, amount_refunded=2000)
    vase_line = RefundSkuFactory(refund=refund, order_sku=vase, amount_refunded=None)

    assert refund_sku_amounts(refund) == {mug_line.pk: 2000, vase_line.pk: 6000}


def test_when_the_platform_amounts_exceed_the_sub_total_a_line_shows_price_times_quantity():
    bag = BagFactory()
    mug = OrderSkuFactory(bag=bag, price=2450, quantity=3)
    vase = OrderSkuFactory(bag=bag, price=6400)
    refund = RefundFactory(bag=bag, sub_total_amount=6000)
    vase_line = RefundSkuFactory(refund=refund, order_sku=vase, amount_refunded=6400)
    mug_line = RefundSkuFactory(refund=refund, order_sku=mug, quantity_refunded=2, amount_refunded=None)

    assert refund_sku_amounts(refund) == {vase_line.pk: 6400, mug_line.pk: 4900}


def test_the_refund_page_shows_each_lines_amount_formatted(admin_client):
    bag = BagFactory()
    mug = OrderSkuFactory(bag=bag, price=2450, name="Stoneware Mug")
    tote = OrderSkuFactory(bag=bag, price=2800, name="Canvas Tote")
    refund = RefundFactory(bag=bag, sub_total_amount=5250)
    RefundSkuFactory(refund=refund, order_sku=mug, amount_refunded=None)
    RefundSkuFactory(refund=refund, order_sku=tote, amount_refunded=2800)

    page = admin_client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()

    assert "24.50 USD" in page and "28.00 USD" in page
    line_list = admin_client.get(reverse("admin:refunds_refundsku_changelist")).content.decode()
    assert "24.50 USD" in line_list and "28.00 USD" in line_list

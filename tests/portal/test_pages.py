"""Home, orders and refund pages: each merchant sees the seeds' instructions for their own platform,
statuses in words, and one accessible layout without external resources."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from platforms.models import Platform, SfccRefundMode
from portal.presenters import REFUND_STATUS_TEXT
from refunds.models import FulfillmentStatus, RefundStatus
from tests.factories import BagFactory, MerchantFactory, OrderSkuFactory, RefundFactory, RefundSkuFactory
from tests.portal.conftest import logged_in, portal_user

pytestmark = pytest.mark.django_db

OLD = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
NEW = dt.datetime(2024, 4, 22, tzinfo=dt.UTC)


def home_of(merchant) -> str:
    return logged_in(portal_user(merchant)).get(reverse("portal:home")).content.decode()


@pytest.mark.parametrize(
    ("platform", "mode", "must_show", "must_not_show"),
    [
        (Platform.SHOPIFY, "", ["Refund payments now", "Manual", "5-10 business days"], ["Option 2"]),
        (Platform.ECWID, "", ["Refund button cannot be used", "mark the order Cancelled"], ["Refund payments now"]),
        (Platform.WIX, "", ["before 2024-04-22", "Actions → Cancel → Cancel Order", "Unfulfill", "standard way"], []),
        (
            Platform.SFCC,
            SfccRefundMode.CANCEL_AS_REFUND,
            ["Option 1, Mark the order as cancelled", "OCAPI and SCAPI"],
            ["Report a refund:"],
        ),
        (
            Platform.SFCC,
            SfccRefundMode.MANUAL_NOTICE,
            ["Option 2, Notify us of refunds", "Report a refund:", "API key"],
            ["Option 1, Mark"],
        ),
        (Platform.BIGCOMMERCE, "", ["offline"], []),
        (Platform.WOOCOMMERCE, "", ["Refund the order the usual way"], []),
    ],
)
def test_home_shows_the_instructions_of_the_merchants_own_platform(platform, mode, must_show, must_not_show):
    page = home_of(MerchantFactory(platform=platform, sfcc_refund_mode=mode))
    for text in must_show:
        assert text in page, text
    for text in must_not_show:
        assert text not in page, text


@pytest.mark.parametrize(
    ("placed_at", "fulfillment", "must_show", "must_not_show"),
    [
        (NEW, FulfillmentStatus.PROCESSING, ["refund it in Wix as usual"], ["Unfulfill"]),
        (OLD, FulfillmentStatus.PROCESSING, ["refund it by cancelling it", "Choose Cancel Order."], ["Unfulfill"]),
        (
            OLD,
            FulfillmentStatus.SHIPPED,
            ["after unfulfilling it", "Go to Actions, then Unfulfill.", "Then: choose Cancel Order."],
            ["as usual"],
        ),
    ],
)
def test_a_wix_order_shows_the_rule_for_its_date_and_fulfillment(placed_at, fulfillment, must_show, must_not_show):
    merchant = MerchantFactory(platform=Platform.WIX)
    bag = BagFactory(merchant=merchant, placed_at=placed_at, fulfillment_status=fulfillment)
    page = logged_in(portal_user(merchant)).get(reverse("portal:order_detail", args=[bag.pk])).content.decode()
    for text in must_show:
        assert text in page, text
    for text in must_not_show:
        assert text not in page, text


def test_home_lists_recent_orders_and_refunds_with_status():
    merchant = MerchantFactory(platform=Platform.SHOPIFY)
    bag = BagFactory(merchant=merchant, external_id="450789469", total=11300)
    RefundFactory(bag=bag, status=RefundStatus.COMPLETED, sub_total_amount=2500, external_id="RF-9")
    page = home_of(merchant)
    assert "450789469" in page and "113.00 USD" in page
    assert "RF-9" in page and "25.00 USD" in page and "Completed" in page


def test_the_refund_page_explains_the_status_and_refreshes_while_processing():
    merchant = MerchantFactory(platform=Platform.SFCC)
    bag = BagFactory(merchant=merchant, external_id="00012345")
    sku = OrderSkuFactory(bag=bag, name="Blue mug", price=2500)
    refund = RefundFactory(bag=bag, external_id="RF-7", sub_total_amount=2500, tax_amount=200, reason="chipped")
    RefundSkuFactory(refund=refund, order_sku=sku, quantity_refunded=1)
    client = logged_in(portal_user(merchant))
    page = client.get(reverse("portal:refund_detail", args=[refund.pk])).content.decode()
    assert 'data-status="PROCESSING"' in page and '<meta http-equiv="refresh" content="5">' in page
    assert "27.00 USD" in page and "2.00 USD" in page and "Blue mug × 1" in page and "RF-7" in page
    refund.status = RefundStatus.COMPLETED
    refund.save()
    page = client.get(reverse("portal:refund_detail", args=[refund.pk])).content.decode()
    assert 'data-status="COMPLETED"' in page and "http-equiv" not in page
    assert "5-10 business days" in page


@pytest.mark.parametrize("status", list(RefundStatus))
def test_every_refund_status_has_words(status):

    label, text = REFUND_STATUS_TEXT[status]
    assert label and text


def test_lists_paginate():
    merchant = MerchantFactory()
    for _ in range(30):
        BagFactory(merchant=merchant)
    client = logged_in(portal_user(merchant))
    first = client.get(reverse("portal:orders")).content.decode()
    assert "Page 1 of 2" in first
    assert client.get(reverse("portal:orders"), {"page": "999"}).status_code == 200
    assert client.get(reverse("portal:orders"), {"page": "x"}).status_code == 200


def test_pages_are_phone_ready_and_load_nothing_from_elsewhere():
    merchant = MerchantFactory(platform=Platform.SFCC)
    bag = BagFactory(merchant=merchant)
    OrderSkuFactory(bag=bag)
    client = logged_in(portal_user(merchant))
    urls = [
        reverse("portal:home"),
        reverse("portal:orders"),
        reverse("portal:refunds"),
        reverse("portal:order_detail", args=[bag.pk]),
        reverse("portal:refund_report", args=[bag.pk]),
        reverse("portal:api_keys"),
    ]
    for url in urls:
        page = client.get(url).content.decode()
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page, url
        assert "@media (max-width: 600px)" in page
        # No external scripts, styles, fonts or images: every src/href is local or an anchor.
        for attribute in re.findall(r'(?:src|href)="([^"]*)"', page):
            assert attribute.startswith(("/", "#", "?")), (url, attribute)
        assert "<script src" not in page and "@import" not in page
        # Every visible input has a label.
        for input_id in re.findall(r'<(?:input|select|textarea)(?![^>]*type="hidden")[^>]*id="([^"]+)"', page):
            assert f'<label for="{input_id}">' in page, (url, input_id)


def test_form_hints_are_tied_to_their_inputs():
    merchant = MerchantFactory(platform=Platform.WIX)
    page = logged_in(portal_user(merchant)).get(reverse("portal:connect_wix")).content.decode()
    for name in ("api_key", "account_id", "site_id"):
        assert f'id="id_{name}_helptext"' in page
        assert re.search(rf'<input[^>]*aria-describedby="id_{name}_helptext"[^>]*name="{name}"', page) or re.search(
            rf'<input[^>]*name="{name}"[^>]*aria-describedby="id_{name}_helptext"', page
        ), name


def test_orders_can_be_found_by_order_number():
    merchant = MerchantFactory()
    wanted = BagFactory(merchant=merchant, external_id="00012345")
    BagFactory(merchant=merchant, external_id="00099999")
    elsewhere = BagFactory(external_id="00012345-other")  # another merchant's order: never listed
    client = logged_in(portal_user(merchant))
    for query in ("00012345", "#0001234", str(wanted.pk)):
        response = client.get(reverse("portal:orders"), {"q": query})
        assert [row.bag for row in response.context["bag_rows"]] == [wanted], query
    assert elsewhere not in [row.bag for row in client.get(reverse("portal:orders"), {"q": "000"}).context["bag_rows"]]
    nothing = client.get(reverse("portal:orders"), {"q": "nope"})
    assert nothing.context["bag_rows"] == [] and "No order matches" in nothing.content.decode()
    assert 'role="search"' in nothing.content.decode()


@pytest.mark.parametrize(
    ("status", "financial", "label"),
    [
        ("REFUNDED", "REFUNDED", "Refunded"),
        ("ACCEPTED", "PAID", "Accepted"),
        ("PARTIALLY_REFUNDED", "PARTIALLY_REFUNDED", "Partially Refunded"),
        ("ACCEPTED", "AUTHORIZED", "Accepted, payment authorized"),
    ],
)
def test_an_order_has_one_status_never_doubled(status, financial, label):
    merchant = MerchantFactory()
    bag = BagFactory(merchant=merchant, status=status, financial_status=financial)
    client = logged_in(portal_user(merchant))
    [row] = client.get(reverse("portal:orders")).context["bag_rows"]
    assert row.status_label == label
    assert client.get(reverse("portal:order_detail", args=[bag.pk])).context["status_label"] == label

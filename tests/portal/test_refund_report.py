"""Report a refund (seed 000, SFCC Option 2): the form, every validation rule, recording through
refund_record, and double submits."""

import re

import pytest
from django.urls import reverse

from platforms.models import Platform, SfccRefundMode
from portal.forms import RefundNoticeForm
from refunds.amounts import bag_refundable_remaining
from refunds.models import BagStatus, Refund, RefundEvent, RefundSku, RefundSource, RefundStatus
from tests.factories import BagFactory, MerchantFactory, OrderSkuFactory
from tests.portal.conftest import logged_in, notice_bag, portal_user, sfcc_merchant
from violet_refunds.money import parse_major

pytestmark = pytest.mark.django_db


def report_url(bag):
    return reverse("portal:refund_report", args=[bag.pk])


def form_token(response) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', response.content.decode())
    assert match, "the form carries a per-render token"
    return match.group(1)


def notice_data(bag, client, **overrides):
    skus = list(bag.skus.order_by("pk"))
    data = {
        f"qty_{skus[0].pk}": "1",
        f"qty_{skus[1].pk}": "0",
        "items_amount": "",
        "shipping_amount": "5.00",
        "tax_amount": "4.00",
        "reason_code": "CUSTOMER",
        "reference": "RF-1001",
        "reason": "Mug arrived chipped",
        "form_token": form_token(client.get(report_url(bag))),
        "confirmed": "yes",  # the review step's confirmation (tested on its own below)
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def bag():
    return notice_bag()


@pytest.fixture
def client(bag):
    return logged_in(portal_user(bag.merchant, username="alice"))


def test_form_shows_what_is_left_and_a_zero_total(client, bag):
    response = client.get(report_url(bag))
    assert response.status_code == 200
    page = response.content.decode()
    # Items 115.00, shipping 5.00, tax 8.00 still refundable; per-SKU quantities.
    assert "items 115.00 USD, shipping 5.00 USD, tax 8.00 USD, total 128.00 USD" in page
    assert "2 of 2 still refundable" in page and "1 of 1 still refundable" in page
    assert '<output id="refund-total" for="refund-notice">0.00</output>' in page
    assert 'name="form_token"' in page


def test_a_valid_notice_is_recorded_and_lands_on_its_status_page(client, bag, django_capture_on_commit_callbacks):
    data = notice_data(bag, client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(report_url(bag), data)
    refund = Refund.objects.get(bag=bag)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:refund_detail", args=[refund.pk])
    assert (refund.sub_total_amount, refund.shipping_amount, refund.tax_amount, refund.amount) == (5000, 500, 400, 5900)
    assert refund.source == RefundSource.MERCHANT_NOTICE
    assert refund.external_id == "RF-1001"
    assert refund.request_key == data["form_token"]
    assert refund.reason_code == "CUSTOMER" and refund.reason == "Mug arrived chipped"
    assert refund.created_by.username == "alice"
    assert list(RefundSku.objects.filter(refund=refund).values_list("order_sku__price", "quantity_refunded")) == [
        (5000, 1)
    ]
    recorded = RefundEvent.objects.get(refund=refund, kind=RefundEvent.Kind.RECORDED)
    assert recorded.actor == "merchant:alice"
    # Processed in-process after commit through the Stripe sandbox.
    refund.refresh_from_db()
    assert refund.status == RefundStatus.COMPLETED
    page = client.get(response["Location"]).content.decode()
    assert "Completed" in page and "59.00 USD" in page and "RF-1001" in page


def test_the_items_amount_can_be_adjusted_down(client, bag):
    response = client.post(report_url(bag), notice_data(bag, client, items_amount="42.50", tax_amount="0"))
    assert response.status_code == 302
    refund = Refund.objects.get(bag=bag)
    assert (refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (4250, 500, 0)


def test_shipping_and_tax_alone_are_a_refund(client, bag):
    skus = list(bag.skus.all())
    data = notice_data(bag, client, **{f"qty_{skus[0].pk}": "0"})
    assert client.post(report_url(bag), data).status_code == 302
    refund = Refund.objects.get(bag=bag)
    assert (refund.sub_total_amount, refund.amount) == (0, 900)
    assert not refund.skus.exists()


def test_double_submit_records_one_refund(client, bag):
    data = notice_data(bag, client, **{f"qty_{bag.skus.order_by('pk')[0].pk}": "2"})
    first = client.post(report_url(bag), data)
    second = client.post(report_url(bag), data)
    refund = Refund.objects.get(bag=bag)
    assert first["Location"] == second["Location"] == reverse("portal:refund_detail", args=[refund.pk])
    assert Refund.objects.filter(bag=bag).count() == 1
    assert bag.skus.order_by("pk")[0].quantity_refunded == 2


def test_same_reference_from_a_fresh_form_returns_the_first_refund(client, bag):
    client.post(report_url(bag), notice_data(bag, client))
    again = client.post(report_url(bag), notice_data(bag, client))  # new form token, same reference
    assert Refund.objects.filter(bag=bag).count() == 1
    assert again["Location"] == reverse("portal:refund_detail", args=[Refund.objects.get(bag=bag).pk])


def test_same_reference_for_a_different_refund_is_refused_with_both_side_by_side(client, bag):
    first = client.post(report_url(bag), notice_data(bag, client, tax_amount="0.25", shipping_amount="0"))
    assert first.status_code == 302
    again = client.post(report_url(bag), notice_data(bag, client, tax_amount="0.50", shipping_amount="0"))
    assert again.status_code == 400
    [refund] = Refund.objects.filter(bag=bag)  # the second refund was not recorded, nor swapped for the first
    conflict = again.context["conflict"]
    assert conflict.first == refund and conflict.reference == "RF-1001"
    assert (conflict.first_amounts.tax, conflict.entered.tax) == ("0.25 USD", "0.50 USD")
    assert conflict.suggested_reference == "RF-1001-2"
    body = again.content.decode()
    assert 'id="reference-conflict"' in body and "give it a new reference" in body
    said = str(again.context["form"].errors["reference"])
    assert f"Already used for refund {refund.pk}" in said and "give it a new reference" in said
    # With a new reference, the second refund is recorded.
    third = client.post(
        report_url(bag), notice_data(bag, client, tax_amount="0.50", shipping_amount="0", reference="RF-1001-2")
    )
    assert third.status_code == 302
    assert sorted(Refund.objects.filter(bag=bag).values_list("tax_amount", flat=True)) == [25, 50]


def test_same_form_token_with_another_reference_returns_the_first_refund(client, bag):
    data = notice_data(bag, client)
    client.post(report_url(bag), data)
    client.post(report_url(bag), {**data, "reference": "RF-OTHER"})
    assert list(Refund.objects.filter(bag=bag).values_list("external_id", flat=True)) == ["RF-1001"]


# --- validation rules: each one refuses the notice with a message on the right field -------------


def input_tag(page: str, name: str) -> str:
    match = re.search(rf'<(?:input|select|textarea)[^>]*name="{name}"[^>]*>', page)
    assert match, f"no input named {name}"
    return match.group(0)


def _errors(response):
    return response.context["form"].errors


@pytest.mark.parametrize(
    ("overrides_for", "field", "message"),
    [
        (lambda s: {f"qty_{s[0].pk}": "3"}, "qty_0", "Only 2 of this item can still be refunded."),
        (lambda s: {f"qty_{s[0].pk}": "-1"}, "qty_0", "The quantity cannot be negative."),
        (lambda s: {f"qty_{s[0].pk}": "1.5"}, "qty_0", "Enter a whole number of items."),
        (lambda s: {f"qty_{s[0].pk}": "two"}, "qty_0", "Enter a whole number of items."),
        (lambda s: {"shipping_amount": "5.01"}, "shipping_amount", "At most 5.00 USD is left to refund."),
        (lambda s: {"tax_amount": "8.01"}, "tax_amount", "At most 8.00 USD is left to refund."),
        (lambda s: {"tax_amount": "-1"}, "tax_amount", "The amount cannot be negative."),
        (lambda s: {"shipping_amount": "1.005"}, "shipping_amount", "USD amounts have 2 decimal places."),
        (lambda s: {"shipping_amount": "1e9"}, "shipping_amount", "Enter an amount in USD such as 12.50."),
        (lambda s: {"shipping_amount": "4,50"}, "shipping_amount", "Enter an amount in USD such as 12.50."),
        (lambda s: {"shipping_amount": "$4"}, "shipping_amount", "Enter an amount in USD such as 12.50."),
        (lambda s: {"items_amount": "50.01"}, "items_amount", "At most 50.00 USD for these quantities"),
        (lambda s: {"items_amount": "115.01"}, "items_amount", "At most 115.00 USD is left to refund."),
        (lambda s: {"reference": ""}, "reference", "This field is required."),
        (lambda s: {"reference": "x" * 256}, "reference", "at most 255 characters"),
        (lambda s: {"reference": "cancel:450789469"}, "reference", "reserved for cancellations"),
        (lambda s: {"reference": "RF\x001"}, "reference", "Null characters are not allowed."),
        (lambda s: {"reference": "RF\u20281"}, "reference", "no line breaks or control characters"),
        (lambda s: {"reason_code": "BOGUS"}, "reason_code", "Select a valid choice."),
        (lambda s: {"reason": "r" * 256}, "reason", "at most 255 characters"),
        (lambda s: {"form_token": "short"}, "form_token", "This form has expired; open it again."),
        (lambda s: {"form_token": None}, "form_token", "This field is required."),
    ],
)
def test_validation_rule(client, bag, overrides_for, field, message):
    skus = list(bag.skus.order_by("pk"))
    response = client.post(report_url(bag), notice_data(bag, client, **overrides_for(skus)))
    assert response.status_code == 400
    field = f"qty_{skus[0].pk}" if field == "qty_0" else field
    assert any(message in text for text in _errors(response)[field]), _errors(response)
    assert not Refund.objects.filter(bag=bag).exists()
    # The error is tied to its input for screen readers.
    page = response.content.decode()
    if field != "form_token":
        assert f'id="id_{field}_error"' in page
        tag = input_tag(page, field)
        assert re.search(rf'aria-describedby="[^"]*id_{field}_error"', tag), tag
        assert 'aria-invalid="true"' in tag


def test_nothing_to_refund_is_refused(client, bag):
    skus = list(bag.skus.all())
    data = notice_data(bag, client, **{f"qty_{skus[0].pk}": "0", "shipping_amount": "0", "tax_amount": ""})
    response = client.post(report_url(bag), data)
    assert response.status_code == 400
    assert "Nothing to refund" in str(_errors(response)["__all__"])
    assert not Refund.objects.exists()


def test_a_sku_fully_refunded_cannot_be_refunded_again(client, bag):
    first_sku = bag.skus.order_by("pk")[0]
    client.post(report_url(bag), notice_data(bag, client, **{f"qty_{first_sku.pk}": "2", "reference": "RF-1"}))
    assert "disabled" in input_tag(client.get(report_url(bag)).content.decode(), f"qty_{first_sku.pk}")
    again = {f"qty_{first_sku.pk}": "1", "shipping_amount": "0", "tax_amount": "0", "reference": "RF-2"}
    response = client.post(report_url(bag), notice_data(bag, client, **again))
    # The field is disabled (nothing left of that SKU): the posted 1 counts as 0.
    assert response.status_code == 400
    assert "Nothing to refund" in str(_errors(response)["__all__"])
    assert Refund.objects.filter(bag=bag).count() == 1


def test_everything_refunded_shows_nothing_left(client, bag):
    skus = list(bag.skus.order_by("pk"))
    data = notice_data(
        bag, client, **{f"qty_{skus[0].pk}": "2", f"qty_{skus[1].pk}": "1", "shipping_amount": "5", "tax_amount": "8"}
    )
    assert client.post(report_url(bag), data).status_code == 302
    page = client.get(report_url(bag)).content.decode()
    assert "there is nothing left to report" in page


def test_the_service_refusal_is_shown_on_the_form(client, bag):
    # The form does not know bag statuses; refund_record refuses under the bag's lock.
    data = notice_data(bag, client)
    type(bag).objects.filter(pk=bag.pk).update(status=BagStatus.REFUNDED)
    response = client.post(report_url(bag), data)
    assert response.status_code == 400
    assert "Bag status REFUNDED is not refundable." in str(_errors(response)["__all__"])
    assert not Refund.objects.exists()


def test_service_field_errors_map_onto_form_fields(bag):
    form = RefundNoticeForm(
        {"reference": "x"}, bag=bag, skus=list(bag.skus.all()), remaining=bag_refundable_remaining(bag)
    )
    form.is_valid()
    form.add_service_errors(
        {
            "sub_total_amount": ["110.00 USD exceeds the 100.00 USD still refundable."],
            "shipping_amount": ["6.00 USD exceeds the 5.00 USD still refundable."],
            "tax_amount": ["9.00 USD exceeds the 8.00 USD still refundable."],
            "skus": ["quantity_refunded 3 for order_sku_id 9 exceeds the 2 left."],
            "amount": ["The refund amount must be greater than 0."],
        },
        "The refund is invalid.",
    )
    assert "110.00 USD exceeds" in str(form.errors["items_amount"])
    assert "6.00 USD exceeds" in str(form.errors["shipping_amount"])
    assert "9.00 USD exceeds" in str(form.errors["tax_amount"])
    assert "exceeds the 2 left" in str(form.errors["__all__"]) and "greater than 0" in str(form.errors["__all__"])


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "USD", 1250),
        ("12.5", "USD", 1250),
        (" 7 ", "USD", 700),
        ("0", "USD", 0),
        ("1250", "JPY", 1250),
        ("1.250", "KWD", 1250),
        (".5", "USD", 50),
    ],
)
def test_major_units_parse_exactly(text, currency, minor):
    assert parse_major(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("12.5", "JPY"),
        ("0.001", "USD"),
        ("1e3", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("", "USD"),
        ("-", "USD"),
        ("1" * 21, "USD"),
        ("١٢", "USD"),
    ],
)
def test_major_units_refuse_what_is_not_an_exact_amount(text, currency):
    with pytest.raises(ValueError):
        parse_major(text, currency)


# --- who may report ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "mode", "shown"),
    [
        (Platform.SFCC, SfccRefundMode.CANCEL_AS_REFUND, "Option 1, Mark the order as cancelled"),
        (Platform.SHOPIFY, "", "Refund payments now"),
        (Platform.ECWID, "", "mark the order Cancelled"),
        (Platform.WIX, "", "Wix"),
    ],
)
def test_merchants_whose_platform_reports_refunds_get_their_instructions_instead(platform, mode, shown):
    merchant = MerchantFactory(platform=platform, sfcc_refund_mode=mode)
    bag = BagFactory(merchant=merchant)
    sku = OrderSkuFactory(bag=bag, price=10000)
    client = logged_in(portal_user(merchant))
    page = client.get(report_url(bag))
    assert page.status_code == 200
    assert "There is nothing to report here" in page.content.decode()
    assert shown in page.content.decode()
    posted = client.post(
        report_url(bag),
        {f"qty_{sku.pk}": "1", "reason_code": "OTHER", "reference": "R1", "form_token": "a" * 24},
    )
    assert posted.status_code == 403
    assert not Refund.objects.exists()
    assert "Report a refund" not in client.get(reverse("portal:order_detail", args=[bag.pk])).content.decode()


def test_an_option_2_order_links_to_the_report_form(client, bag):
    page = client.get(reverse("portal:order_detail", args=[bag.pk])).content.decode()
    assert f'href="{report_url(bag)}"' in page
    assert "Option 2, Notify us of refunds" in page


def test_sfcc_option_2_merchant_fixture_is_option_2():
    assert sfcc_merchant().sfcc_refund_mode == SfccRefundMode.MANUAL_NOTICE


def test_a_valid_form_first_shows_the_review_with_the_amount_on_the_button(client, bag):
    data = notice_data(bag, client, confirmed=None)
    review = client.post(report_url(bag), data)
    assert review.status_code == 200
    assert not Refund.objects.filter(bag=bag).exists()  # nothing recorded before the confirmation
    body = review.content.decode()
    assert "Report refund of 59.00 USD" in body and 'name="confirmed" value="yes"' in body
    # "Change something" goes back to the filled-in form, still nothing recorded.
    edit = client.post(report_url(bag), {**data, "edit": "1"})
    assert edit.status_code == 200 and edit.context["review"] is None
    assert 'value="RF-1001"' in edit.content.decode()
    confirmed = client.post(report_url(bag), {**data, "confirmed": "yes"})
    assert confirmed.status_code == 302
    assert Refund.objects.get(bag=bag).amount == 5900


def test_report_a_refund_leads_the_order_page_with_what_is_left(client, bag):
    body = client.get(reverse("portal:order_detail", args=[bag.pk])).content.decode()
    top = body.index('id="report-refund-top"')
    assert top < body.index("<h2>Items</h2>")
    assert "Report a refund (up to 128.00 USD)" in body  # 2 × 50.00 + 15.00 + shipping 5.00 + tax 8.00

"""The operator's refund notice (SFCC Option 2): merchant and order, what was refunded, a preview of
the amount and the split that writes nothing, then one refund through refund_notice_record (the
portal's own notice rule) and so refund_record."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from platforms.models import Platform, SfccRefundMode
from refunds.admin.selectors import merchants_for_operator_notice
from refunds.models import OrderSku, Refund, RefundEvent, RefundSource, RefundStatus
from tests.factories import MerchantFactory
from tests.world import funded_bag

pytestmark = pytest.mark.django_db

NOTICE = reverse("admin:refunds_refund_record_notice")


@pytest.fixture
def sfcc_bag():
    """$100.00 of items (2 x $50.00), $5.00 shipping, $8.00 tax, 10% commission; paid out."""
    merchant = MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE)
    return funded_bag(merchant=merchant, skus=((5000, 2),), shipping=500, tax=800, commission_rate="10.00")


def notice_url(bag, order=None):
    return f"{NOTICE}?merchant={bag.merchant_id}&order={order or bag.external_id}"


def notice_data(bag, *, quantity=1, shipping="5.00", tax="4.00", reference="RMA-1001", submission="tok1", **extra):
    sku = bag.skus.get()
    return {
        f"sku_{sku.pk}": str(quantity),
        "shipping": shipping,
        "tax": tax,
        "reason_code": "CUSTOMER",
        "reason": "Returned in store",
        "external_id": reference,
        "form_token": submission,
        **extra,
    }


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_only_merchants_without_a_refund_signal_are_offered(monkeypatch):
    from platforms import adapters

    manual = MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE)
    MerchantFactory(platform=Platform.SFCC, sfcc_refund_mode=SfccRefundMode.CANCEL_AS_REFUND)
    MerchantFactory(platform=Platform.SHOPIFY)
    bigcommerce = MerchantFactory(platform=Platform.BIGCOMMERCE)
    assert set(merchants_for_operator_notice()) == {manual}
    # A platform we have no adapter for cannot report refunds either.
    monkeypatch.delitem(adapters.ADAPTERS, Platform.BIGCOMMERCE)
    assert set(merchants_for_operator_notice()) == {manual, bigcommerce}


def test_a_merchant_with_a_refund_signal_cannot_be_chosen(operator_client):
    shopify_bag = funded_bag()
    response = operator_client.get(notice_url(shopify_bag))
    assert "merchant" in response.context["lookup"].errors
    assert "form" not in response.context


def test_unknown_order_is_reported(operator_client, sfcc_bag):
    response = operator_client.get(notice_url(sfcc_bag, order="no-such-order"))
    assert response.context["lookup"].errors == {"order": ["This merchant has no order with that id."]}


def test_the_order_is_found_by_platform_order_id_or_bag_id(operator_client, sfcc_bag):
    for order in (sfcc_bag.external_id, str(sfcc_bag.pk)):
        response = operator_client.get(notice_url(sfcc_bag, order=order))
        assert response.context["bag"] == sfcc_bag
        assert response.context["remaining"]["total"] == "113.00 USD"


def test_preview_shows_amount_and_split_and_writes_nothing(operator_client, sfcc_bag):
    events_before = RefundEvent.objects.count()
    response = operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, _preview="1"))
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview["existing"] is None
    assert (preview["items"], preview["shipping"], preview["tax"], preview["amount"]) == (
        "50.00 USD",
        "5.00 USD",
        "4.00 USD",
        "59.00 USD",
    )
    # Commission is on items only: 10% of 50.00 from the channel, the rest from the merchant.
    assert (preview["channel_reversal"], preview["merchant_reversal"]) == ("5.00 USD", "54.00 USD")
    assert preview["commission_at_checkout"] == "10.00 USD"
    body = response.content.decode()
    assert 'name="_confirm"' in body and 'type="hidden" name="external_id" value="RMA-1001"' in body
    assert Refund.objects.count() == 0
    assert OrderSku.objects.get(bag=sfcc_bag).quantity_refunded == 0
    assert RefundEvent.objects.count() == events_before


def test_confirm_records_one_operator_refund_that_is_then_processed(
    operator_client, operator, sfcc_bag, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, _confirm="1"))
    refund = Refund.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:refunds_refund_change", args=[refund.pk])
    assert messages_of(response) == [
        f"Recorded refund {refund.pk} of 59.00 USD for order {sfcc_bag.external_id}; processing started."
    ]
    assert (refund.source, refund.external_id, refund.request_key) == (
        RefundSource.OPERATOR,
        "RMA-1001",
        "admin-notice-tok1",
    )
    assert (refund.amount, refund.sub_total_amount, refund.shipping_amount, refund.tax_amount) == (5900, 5000, 500, 400)
    assert (refund.reason_code, refund.reason, refund.created_by) == ("CUSTOMER", "Returned in store", operator)
    assert [(line.order_sku_id, line.quantity_refunded) for line in refund.skus.all()] == [(sfcc_bag.skus.get().pk, 1)]
    recorded = refund.events.get(kind=RefundEvent.Kind.RECORDED)
    assert (recorded.actor, recorded.user) == ("operator:olivia", operator)
    # Tasks run in-process: the refund moved the money with the split the preview showed.
    assert refund.status == RefundStatus.COMPLETED
    assert (refund.merchant_transfer_reversal_amount_usd, refund.developer_transfer_reversal_amount_usd) == (
        5400,
        500,
    )


def test_a_double_submit_records_one_refund(operator_client, sfcc_bag):
    data = notice_data(sfcc_bag, _confirm="1")
    operator_client.post(notice_url(sfcc_bag), data)
    second = operator_client.post(notice_url(sfcc_bag), data)
    refund = Refund.objects.get()
    assert messages_of(second)[-1] == (
        f"This notice was already recorded as refund {refund.pk} (59.00 USD); nothing new was recorded."
    )
    assert second["Location"] == reverse("admin:refunds_refund_change", args=[refund.pk])
    assert OrderSku.objects.get(bag=sfcc_bag).quantity_refunded == 1
    # The same form token with another reference is the same submission too.
    operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, reference="RMA-other", _confirm="1"))
    assert Refund.objects.count() == 1


def test_preview_of_an_already_recorded_reference_says_so(operator_client, sfcc_bag):
    operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, _confirm="1"))
    response = operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, submission="tok2", _preview="1"))
    assert response.context["preview"]["existing"] == Refund.objects.get()
    assert "already recorded" in response.content.decode()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"quantity": 3}, "sku_", "Ensure this value is less than or equal to 2."),
        ({"shipping": "6.00"}, "shipping", "6.00 USD exceeds the 5.00 USD still refundable."),
        ({"quantity": 0, "shipping": "0", "tax": "0"}, None, "amount: The refund amount must be greater than 0."),
        ({"shipping": "1.234"}, "shipping", "Ensure that there are no more than 2 decimal places."),
        ({"reference": ""}, "external_id", "This field is required."),
    ],
)
def test_invalid_notices_are_explained_and_record_nothing(operator_client, sfcc_bag, changes, field, message):
    response = operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, **changes, _confirm="1"))
    assert response.status_code == 200
    form = response.context["form"]
    if field == "sku_":
        field = f"sku_{sfcc_bag.skus.get().pk}"
    assert message in form.errors[field or "__all__"]
    assert Refund.objects.count() == 0
    assert OrderSku.objects.get(bag=sfcc_bag).quantity_refunded == 0


def test_edit_goes_back_to_the_form_with_the_values(operator_client, sfcc_bag):
    response = operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, _edit="1"))
    assert "preview" not in response.context
    assert response.context["form"]["external_id"].value() == "RMA-1001"
    assert Refund.objects.count() == 0


def test_viewer_cannot_record_a_notice(viewer_client, sfcc_bag):
    assert viewer_client.get(NOTICE).status_code == 403
    assert viewer_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, _confirm="1")).status_code == 403
    assert Refund.objects.count() == 0


@pytest.mark.parametrize("submit", ["_preview", "_confirm"])
def test_a_cancel_reference_is_refused_like_the_portal_does(operator_client, sfcc_bag, submit):
    """`cancel:<order id>` is the external id of a cancellation recorded as a refund: an operator's
    notice under it would silence the platform's later cancellation refund (same rule as the portal)."""
    from refunds.services.notices import reference_problem

    reference = f"cancel:{sfcc_bag.external_id}"
    response = operator_client.post(notice_url(sfcc_bag), notice_data(sfcc_bag, reference=reference, **{submit: "1"}))
    assert response.status_code == 200
    expected = "References starting with 'cancel:' are reserved for cancellations."
    assert reference_problem(reference) == expected
    assert response.context["form"].errors["external_id"] == [expected]
    assert expected.replace("'", "&#x27;") in response.content.decode()
    assert "preview" not in response.context
    assert Refund.objects.count() == 0
    assert OrderSku.objects.get(bag=sfcc_bag).quantity_refunded == 0

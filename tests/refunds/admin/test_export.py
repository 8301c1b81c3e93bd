"""CSV export of the refund list: the page's filters and search, money as decimal strings."""

import csv
import io

import pytest
from django.urls import reverse

from refunds.admin.export import CSV_HEADER
from refunds.models import RefundStatus
from tests.factories import BagFactory, RefundErrorFactory, RefundFactory

pytestmark = pytest.mark.django_db

EXPORT = reverse("admin:refunds_refund_export")


def exported(client, **params):
    response = client.get(EXPORT, params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="refunds-')
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_HEADER
    return [dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]]


def test_export_has_money_as_decimal_strings_with_currency(operator_client):
    refund = RefundFactory(sub_total_amount=10000, shipping_amount=500, tax_amount=800, status=RefundStatus.FAILED)
    RefundErrorFactory(refund=refund, error_code=3002, error_message="Insufficient funds")
    [row] = exported(operator_client)
    assert row["refund_id"] == str(refund.pk)
    assert (row["amount"], row["sub_total_amount"], row["shipping_amount"], row["tax_amount"]) == (
        "113.00",
        "100.00",
        "5.00",
        "8.00",
    )
    assert row["currency"] == "USD"
    assert (row["status"], row["merchant"], row["platform"]) == ("FAILED", refund.bag.merchant.name, "SHOPIFY")
    assert (row["order_id"], row["bag_external_id"]) == (str(refund.bag.order_id), refund.bag.external_id)
    assert (row["last_error_code"], row["last_error_message"]) == ("3002", "Insufficient funds")
    assert row["date_created"].endswith("+00:00")


def test_export_respects_the_filters_and_search_of_the_list(operator_client):
    failed = RefundFactory(status=RefundStatus.FAILED)
    RefundFactory(status=RefundStatus.COMPLETED)
    other_failed = RefundFactory(status=RefundStatus.FAILED)
    assert {row["refund_id"] for row in exported(operator_client, status__exact="FAILED")} == {
        str(failed.pk),
        str(other_failed.pk),
    }
    assert [row["refund_id"] for row in exported(operator_client, triage="failed", q=failed.bag.external_id)] == [
        str(failed.pk)
    ]
    assert [row["refund_id"] for row in exported(operator_client, triage="failed")] == [
        str(failed.pk),
        str(other_failed.pk),
    ]  # the triage order: oldest first


def test_changelist_links_to_the_export_of_what_it_shows(operator_client):
    response = operator_client.get(reverse("admin:refunds_refund_changelist"), {"triage": "failed", "p": "1"})
    assert response.context["export_url"] == f"{EXPORT}?triage=failed"


def test_zero_decimal_currency_and_spreadsheet_formulas(operator_client):
    bag = BagFactory(currency="JPY")
    RefundFactory(bag=bag, sub_total_amount=3500, reason='=HYPERLINK("http://evil")', external_id="+1-555")
    [row] = exported(operator_client)
    assert (row["amount"], row["currency"]) == ("3500", "JPY")
    assert row["reason"] == '\'=HYPERLINK("http://evil")'
    assert row["refund_external_id"] == "'+1-555"


def test_viewers_may_export_and_anonymous_users_may_not(viewer_client, client):
    RefundFactory()
    assert len(exported(viewer_client)) == 1
    viewer_client.logout()
    response = viewer_client.get(EXPORT)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_export_with_an_invalid_filter_goes_back_to_the_list(operator_client):
    response = operator_client.get(EXPORT, {"date_created__gte": "not-a-date"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:refunds_refund_changelist") + "?e=1"

"""The refund list as CSV, with the filters, search and ordering of the page it was opened from.
Amounts in major units (violet_refunds.money.format_major), text cells guarded against CSV injection.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import TYPE_CHECKING, TypedDict

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.utils import timezone

from refunds.admin.triage import changelist_url
from refunds.models import Refund, RefundError
from violet_refunds.money import format_major

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value) -> str:
    """Text from merchants and platforms must not run as a formula when the file is opened in a
    spreadsheet (CSV injection): such cells get a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _csv_money(amount: int | None, currency: str) -> str:
    return "" if amount is None or not currency else format_major(amount, currency)


def _csv_time(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""


CSV_HEADER = (
    "refund_id",
    "status",
    "source",
    "merchant_id",
    "merchant",
    "platform",
    "app_id",
    "app",
    "order_id",
    "bag_id",
    "bag_external_id",
    "refund_external_id",
    "currency",
    "amount",
    "sub_total_amount",
    "shipping_amount",
    "tax_amount",
    "platform_currency",
    "merchant_transfer_reversal_amount",
    "developer_transfer_reversal_amount",
    "reason_code",
    "reason",
    "last_error_code",
    "last_error_message",
    "date_created",
    "date_completed",
)


class _LastError(TypedDict):
    """What export_csv_view annotates each refund with: its latest error, if any."""

    last_error_code: str | None
    last_error_message: str | None


def _csv_row(refund: WithAnnotations[Refund, _LastError]) -> tuple:
    bag, currency = refund.bag, refund.refund_currency
    merchant, app = bag.merchant, bag.order.app
    return (
        refund.pk,
        refund.status,
        refund.source,
        merchant.pk,
        _csv_text(merchant.name),
        merchant.platform,
        app.pk,
        _csv_text(app.name),
        bag.order_id,
        bag.pk,
        _csv_text(bag.external_id),
        _csv_text(refund.external_id),
        currency,
        _csv_money(refund.amount, currency),
        _csv_money(refund.sub_total_amount, currency),
        _csv_money(refund.shipping_amount, currency),
        _csv_money(refund.tax_amount, currency),
        refund.platform_currency,
        _csv_money(refund.merchant_transfer_reversal_amount_platform_currency, refund.platform_currency),
        _csv_money(refund.developer_transfer_reversal_amount_platform_currency, refund.platform_currency),
        refund.reason_code,
        _csv_text(refund.reason),
        refund.last_error_code or "",
        _csv_text(refund.last_error_message),
        _csv_time(refund.date_created),
        _csv_time(refund.date_completed),
    )


class _Echo:
    """csv.writer writes each row here and gets the line back to stream it."""

    def write(self, value):
        return value


def export_csv_view(model_admin, request):
    """The refund list as CSV, with the filters, search and ordering of the page it was opened from."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    try:
        changelist = model_admin.get_changelist_instance(request)
    except IncorrectLookupParameters:
        return HttpResponseRedirect(changelist_url(model_admin, e=1))
    latest_error = RefundError.objects.filter(refund=OuterRef("pk")).order_by("-pk")
    queryset = (
        changelist.queryset.prefetch_related(None)
        .select_related("bag__merchant", "bag__order__app")
        .annotate(
            last_error_code=Subquery(latest_error.values("error_code")[:1]),
            last_error_message=Subquery(latest_error.values("error_message")[:1]),
        )
    )
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(CSV_HEADER)
        for refund in queryset.iterator(chunk_size=2000):
            yield writer.writerow(_csv_row(refund))

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="refunds-{stamp}.csv"'
    return response

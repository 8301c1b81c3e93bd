"""The refund notice an operator records for a merchant (SFCC Option 2, and platforms that cannot
report refunds): the same rule as the merchant portal and its API (refunds.services.notices), with a
preview computed by the service itself and rolled back.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from refunds.admin.forms import NoticeLookupForm, OperatorNoticeForm
from refunds.admin.operations import require_operator
from refunds.admin.selectors import (
    bag_for_operator_notice,
    bag_skus_left,
    merchant_accepts_operator_notice,
    refund_split_preview,
)
from refunds.amounts import bag_refundable_remaining
from refunds.models import RefundSku, RefundSource
from refunds.services import RecordResult
from refunds.services.notices import NoticeLine, RefundNoticesNotEnabled, refund_notice_record
from violet_refunds.exceptions import ApplicationError, ValidationFailed
from violet_refunds.money import AmountParts, format_amount


class _DryRunRollback(Exception):
    def __init__(self, result: RecordResult, lines: list[RefundSku]):
        super().__init__("dry run")
        self.result, self.lines = result, lines


def _notice_kwargs(form: OperatorNoticeForm, user) -> dict:
    """refund_notice_record's arguments: the same notice rule as the merchant portal and its API."""
    data = form.cleaned_data
    return {
        "bag": form.bag,
        "source": RefundSource.OPERATOR,
        "actor": f"operator:{user.get_username()}",
        "user": user,
        "notices_enabled": merchant_accepts_operator_notice(form.bag.merchant),
        "lines": [NoticeLine(order_sku_id=pk, quantity=qty) for pk, qty in form.sku_quantities().items()],
        # Always explicit, even when 0: with no parts at all refund_record would refund the whole bag.
        "shipping_amount": data["shipping"],
        "tax_amount": data["tax"],
        "reference": data["external_id"],
        "request_key": f"admin-notice-{data['form_token']}",
        "reason": data["reason"],
        "reason_code": data["reason_code"],
    }


def _dry_run_record(kwargs: dict) -> tuple[RecordResult, list[RefundSku]]:
    """What refund_notice_record would record, computed by the service itself in a transaction that
    is then rolled back: the preview can never disagree with the real thing."""
    try:
        with transaction.atomic():
            result = refund_notice_record(enqueue=False, **kwargs)
            lines = list(result.refund.skus.select_related("order_sku"))
            raise _DryRunRollback(result, lines)
    except _DryRunRollback as rollback:
        return rollback.result, rollback.lines


_FORM_FIELD_FOR_SERVICE_FIELD = {
    "shipping_amount": "shipping",
    "tax_amount": "tax",
    "external_id": "external_id",
    "reference": "external_id",
    "reason": "reason",
    "reason_code": "reason_code",
}


def _attach_service_errors(form: OperatorNoticeForm, exc: ApplicationError) -> None:
    if not exc.field_errors:
        form.add_error(None, exc.message)
        return
    for service_field, problems in exc.field_errors.items():
        target = _FORM_FIELD_FOR_SERVICE_FIELD.get(service_field)
        for problem in problems:
            form.add_error(target, problem if target else f"{service_field}: {problem}")


def record_notice_view(model_admin, request):
    """Record a refund a merchant reported (SFCC Option 2) on the merchant's behalf.

    Step 1 (GET): merchant and order. Step 2: quantities per SKU, shipping, tax, reason and the
    merchant's refund reference; "Preview" shows the amount and the merchant/channel split, "Confirm"
    records it through refund_notice_record (source OPERATOR), the merchant portal's own notice rule
    (a `cancel:` reference is refused here too). The merchant's reference is the refund's external id
    and the form token its request key, so a double submit records one refund.
    """
    require_operator(request)
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Record a refund notice for a merchant",
        "subtitle": None,
        "opts": opts,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    lookup = NoticeLookupForm(request.GET if "merchant" in request.GET else None)
    bag = None
    if lookup.is_bound and lookup.is_valid():
        bag = bag_for_operator_notice(merchant=lookup.cleaned_data["merchant"], reference=lookup.cleaned_data["order"])
        if bag is None:
            lookup.add_error("order", "This merchant has no order with that id.")
    context["lookup"] = lookup
    if bag is None:
        return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)

    skus_left = bag_skus_left(bag)
    form = OperatorNoticeForm(request.POST if request.method == "POST" else None, bag=bag, skus_left=skus_left)
    remaining = bag_refundable_remaining(bag)
    context.update(
        bag=bag,
        form=form,
        remaining={
            "items": format_amount(remaining.parts.sub_total, bag.currency),
            "shipping": format_amount(remaining.parts.shipping, bag.currency),
            "tax": format_amount(remaining.parts.tax, bag.currency),
            "total": format_amount(remaining.total, bag.currency),
        },
    )
    if request.method != "POST" or "_edit" in request.POST or not form.is_valid():
        return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)

    kwargs = _notice_kwargs(form, request.user)
    if "_confirm" in request.POST:
        try:
            result = refund_notice_record(**kwargs)
        except (ValidationFailed, RefundNoticesNotEnabled) as exc:
            _attach_service_errors(form, exc)
            return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)
        refund = result.refund
        amount = format_amount(refund.amount, refund.refund_currency)
        if result.created:
            model_admin.message_user(
                request,
                f"Recorded refund {refund.pk} of {amount} for order {bag.external_id or bag.pk}; processing started.",
                messages.SUCCESS,
            )
        else:
            model_admin.message_user(
                request,
                f"This notice was already recorded as refund {refund.pk} ({amount}); nothing new was recorded.",
                messages.WARNING,
            )
        return HttpResponseRedirect(
            reverse("admin:refunds_refund_change", args=[refund.pk], current_app=model_admin.admin_site.name)
        )

    try:
        result, lines = _dry_run_record(kwargs)
    except (ValidationFailed, RefundNoticesNotEnabled) as exc:
        _attach_service_errors(form, exc)
        return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)
    refund = result.refund
    parts = AmountParts(sub_total=refund.sub_total_amount, shipping=refund.shipping_amount, tax=refund.tax_amount)
    split = refund_split_preview(bag=bag, parts=parts)
    context.update(
        preview={
            "existing": None if result.created else refund,
            "lines": [
                {
                    "name": line.order_sku.name,
                    "quantity": line.quantity_refunded,
                    "price": format_amount(line.order_sku.price, bag.currency),
                }
                for line in lines
            ],
            "items": format_amount(refund.sub_total_amount, bag.currency),
            "shipping": format_amount(refund.shipping_amount, bag.currency),
            "tax": format_amount(refund.tax_amount, bag.currency),
            "amount": format_amount(refund.amount, bag.currency),
            "merchant_reversal": _leg_text(split.merchant, split.merchant_currency, bag.currency),
            "channel_reversal": _leg_text(split.channel, split.channel_currency, bag.currency),
            "commission_at_checkout": format_amount(split.commission_at_checkout, bag.currency),
            "problem": split.problem,
        }
    )
    return TemplateResponse(request, "admin/refunds/refund/record_notice.html", context)


def _leg_text(leg, transfer_currency: str, bag_currency: str) -> str:
    if leg is None:
        return "no transfer to reverse"
    text = format_amount(leg.amount, transfer_currency)
    if transfer_currency and transfer_currency != bag_currency:
        text += f" ({format_amount(leg.bag_amount, bag_currency)})"
    return text

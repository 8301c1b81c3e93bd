"""A refund's history under its page (lines, transfer reversals, shopper refund, errors, audit
events), and the read-only admins of refund lines, errors and events. Errors are resolved through a
service (with an audit event), never by ticking a box.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from payments.models import ShopperRefund, TransferReversal
from refunds.admin.operations import error_resolve_action
from refunds.models import RefundError, RefundEvent, RefundSku, RefundStatus
from refunds.selectors import refund_sku_amounts
from violet_refunds.admin import ReadOnlyAdminMixin, ReadOnlyTabularInline, can_operate, money_display, status_badge
from violet_refunds.money import format_amount


@admin.display(description="Amount refunded")
def refund_sku_amount_display(line: RefundSku, amounts_by_refund: dict[int, dict[int, int]]) -> str:
    """The line's amount (refunds.selectors.refund_sku_amounts: the platform's, else its share of the
    refund's sub_total), "24.50 USD"; read once per refund into `amounts_by_refund`."""
    if not line.pk:
        return "-"
    if line.refund_id not in amounts_by_refund:
        amounts_by_refund[line.refund_id] = refund_sku_amounts(line.refund)
    return format_amount(amounts_by_refund[line.refund_id].get(line.pk), line.refund.refund_currency)


class RefundSkuInline(ReadOnlyTabularInline):
    model = RefundSku
    fields = ("order_sku", "external_id", "quantity_refunded", "amount_display")
    readonly_fields = fields
    list_select_related = ("order_sku", "refund")

    def get_formset(self, request, obj=None, **kwargs):
        # Inline instances live for one request: the refund's line amounts are read once per page.
        self._amounts_by_refund: dict[int, dict[int, int]] = {}
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="Amount refunded")
    def amount_display(self, line: RefundSku) -> str:
        return refund_sku_amount_display(line, getattr(self, "_amounts_by_refund", {}))


class RefundErrorInline(ReadOnlyTabularInline):
    """Errors stay read-only rows; operators resolve them through the resolve page (a service call
    with an audit event), linked from each open error."""

    model = RefundError
    fields = (
        "date_created",
        "step",
        "error_code",
        "gateway_code",
        "error_message",
        "resolved",
        "date_resolved",
        "resolved_by",
    )
    readonly_fields = fields
    list_select_related = ("resolved_by",)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return (*fields, "resolve") if can_operate(request.user) else fields

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "resolve")

    @admin.display(description="Resolve")
    def resolve(self, error):
        if error.resolved or not error.pk:
            return "-"
        url = reverse("admin:refunds_refund_resolve_errors", args=[error.refund_id])
        return format_html('<a href="{}?error={}">Resolve…</a>', url, error.pk)


class TransferReversalInline(ReadOnlyTabularInline):
    model = TransferReversal
    fk_name = "refund"
    fields = (
        "transfer",
        "gateway_reversal_id",
        "amount_display",
        "status",
        "error_code",
        "error_message",
        "date_created",
    )
    readonly_fields = fields
    list_select_related = ("transfer",)
    amount_display = money_display("amount", "currency", "Amount")


class ShopperRefundInline(ReadOnlyTabularInline):
    model = ShopperRefund
    fields = (
        "gateway_refund_id",
        "amount_display",
        "status",
        "failure_reason",
        "error_code",
        "error_message",
        "date_created",
    )
    readonly_fields = fields
    amount_display = money_display("amount", "currency", "Amount")


@admin.register(RefundSku)
class RefundSkuAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "refund", "order_sku", "quantity_refunded", "amount_display", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "external_id__exact", "order_sku__sku_id__exact")
    list_filter = ("date_created",)
    list_select_related = ("refund", "order_sku")
    raw_id_fields = ("refund", "order_sku")
    readonly_fields = ("amount_display",)

    @admin.display(description="Amount refunded")
    def amount_display(self, line: RefundSku) -> str:
        return refund_sku_amount_display(line, {})


@admin.register(RefundError)
class RefundErrorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Errors are resolved through a service (with an audit event), not by ticking a box here."""

    list_display = (
        "id",
        "refund",
        "refund_status",
        "step",
        "error_code",
        "gateway_code",
        "short_message",
        "resolved",
        "date_created",
    )
    list_filter = ("resolved", "step", "gateway_code", "refund__status", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "gateway_code__exact", "error_message")
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "resolved_by")
    show_full_result_count = False
    actions = ("resolve_selected_errors",)

    def has_operate_permission(self, request):
        return can_operate(request.user)

    @admin.display(description="Message")
    def short_message(self, error):
        return error.error_message[:80]

    @admin.display(description="Refund status", ordering="refund__status")
    def refund_status(self, error):
        return status_badge(error.refund.status, error.refund.get_status_display())

    @admin.action(description="Resolve selected errors…", permissions=("operate",))
    def resolve_selected_errors(self, request, queryset):
        return error_resolve_action(self, request, queryset)


@admin.register(RefundEvent)
class RefundEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only audit trail: nobody adds, edits or deletes an event by hand."""

    list_display = ("id", "refund", "kind", "status_change", "actor", "short_message", "date_created")
    list_filter = ("kind", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "actor", "message")
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "user")

    @admin.display(description="Status change")
    def status_change(self, event):
        if not event.to_status:
            return "-"
        labels = dict(RefundStatus.choices)
        before = labels.get(event.from_status, event.from_status or "-")
        return f"{before} → {labels.get(event.to_status, event.to_status)}"

    @admin.display(description="Message")
    def short_message(self, event):
        return Truncator(event.message).chars(100)

"""Operator views of money that moved through Stripe. Read-only: Stripe is the truth for these rows,
and the refund engine is the only writer, so nothing here is added, edited or deleted by hand.

The first section holds the small admin building blocks the refunds admin reuses (payments is the
bottom layer, so refunds may import from here, never the other way round).
"""

from functools import reduce

from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from payments.models import PaymentTransaction, ShopperRefund, Transfer, TransferReversal
from violet_refunds.money import format_amount


def money_display(amount_field: str, currency_path: str, description: str):
    """A list/readonly column showing `amount_field` in major units with its currency.

    `currency_path` may follow relations with dots ("bag.currency"); select them in the queryset.
    """

    @admin.display(description=description, ordering=amount_field)
    def display(_model_admin, obj):
        currency = reduce(getattr, currency_path.split("."), obj)
        return format_amount(getattr(obj, amount_field), currency)

    return display


def admin_link(obj):
    """A link to `obj`'s admin change page (plain text when its model is not registered)."""
    if obj is None:
        return "-"
    opts = obj._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(obj)
    return format_html('<a href="{}">{}</a>', url, obj)


class ReadOnlyAdminMixin:
    """View-only admin: rows are written by services (and Stripe), never by a form."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyTabularInline(ReadOnlyAdminMixin, admin.TabularInline):
    """History shown under its parent: no empty forms, no delete boxes, a link to each row."""

    extra = 0
    can_delete = False
    show_change_link = True
    # Columns to select with the rows, so each readonly foreign key costs no extra query.
    list_select_related: tuple[str, ...] = ()

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.list_select_related:
            queryset = queryset.select_related(*self.list_select_related)
        return queryset


# --- payments models ---


class TransferReversalOfTransferInline(ReadOnlyTabularInline):
    model = TransferReversal
    fk_name = "transfer"
    fields = ("gateway_reversal_id", "refund", "amount_display", "status", "error_code", "date_created")
    readonly_fields = fields
    list_select_related = ("refund",)
    amount_display = money_display("amount", "currency", "Amount")


class TransferOfPaymentInline(ReadOnlyTabularInline):
    model = Transfer
    fields = (
        "gateway_transfer_id",
        "bag",
        "recipient",
        "destination_account_id",
        "amount_display",
        "reversed_display",
        "status",
    )
    readonly_fields = fields
    list_select_related = ("bag",)
    amount_display = money_display("amount", "currency", "Amount")
    reversed_display = money_display("reversed_amount", "currency", "Reversed")


@admin.register(PaymentTransaction)
class PaymentTransactionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "gateway_transaction_id",
        "order",
        "amount_display",
        "refunded_display",
        "capture_status",
        "date_created",
    )
    list_filter = ("capture_status", "currency", "date_created")
    search_fields = (
        "id__exact",
        "gateway_transaction_id__exact",
        "gateway_charge_id__exact",
        "order__id__exact",
    )
    list_select_related = ("order",)
    raw_id_fields = ("order",)
    readonly_fields = ("amount_display", "refunded_display", "date_created", "date_last_modified")
    inlines = (TransferOfPaymentInline,)

    amount_display = money_display("amount", "currency", "Amount")
    refunded_display = money_display("amount_refunded", "currency", "Refunded")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "gateway_transfer_id",
        "recipient",
        "bag",
        "destination_account_id",
        "amount_display",
        "reversed_display",
        "bag_amount_display",
        "status",
        "date_created",
    )
    list_filter = ("recipient", "status", "currency", "date_created")
    search_fields = (
        "id__exact",
        "gateway_transfer_id__exact",
        "destination_account_id__exact",
        "bag__external_id__exact",
        "bag__order__id__exact",
        "payment_transaction__gateway_transaction_id__exact",
    )
    list_select_related = ("bag",)
    raw_id_fields = ("bag", "payment_transaction")
    readonly_fields = (
        "amount_display",
        "reversed_display",
        "bag_amount_display",
        "date_created",
        "date_last_modified",
    )
    inlines = (TransferReversalOfTransferInline,)

    amount_display = money_display("amount", "currency", "Amount")
    reversed_display = money_display("reversed_amount", "currency", "Reversed")
    bag_amount_display = money_display("bag_amount", "bag_currency", "Amount in bag currency")


@admin.register(TransferReversal)
class TransferReversalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "gateway_reversal_id",
        "refund",
        "transfer",
        "amount_display",
        "bag_amount_display",
        "status",
        "error_code",
        "date_created",
    )
    list_filter = ("status", "transfer__recipient", "date_created")
    search_fields = (
        "id__exact",
        "gateway_reversal_id__exact",
        "idempotency_key__exact",
        "refund__id__exact",
        "transfer__gateway_transfer_id__exact",
    )
    list_select_related = ("refund", "transfer")
    raw_id_fields = ("refund", "transfer")
    readonly_fields = ("amount_display", "bag_amount_display", "date_created", "date_last_modified")

    amount_display = money_display("amount", "currency", "Amount")
    bag_amount_display = money_display("bag_amount", "transfer.bag_currency", "Amount in bag currency")


@admin.register(ShopperRefund)
class ShopperRefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "gateway_refund_id",
        "refund",
        "amount_display",
        "status",
        "failure_reason",
        "error_code",
        "date_created",
    )
    list_filter = ("status", "date_created")
    search_fields = (
        "id__exact",
        "gateway_refund_id__exact",
        "idempotency_key__exact",
        "refund__id__exact",
        "payment_transaction__gateway_transaction_id__exact",
    )
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "payment_transaction")
    readonly_fields = ("amount_display", "date_created", "date_last_modified")

    amount_display = money_display("amount", "currency", "Amount")

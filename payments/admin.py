"""Operator views of money that moved through Stripe. Read-only: Stripe is the truth for these rows,
and the refund engine is the only writer, so nothing here is added, edited or deleted by hand.

The read-only admins, inlines and money columns come from violet_refunds.admin, like every app's.
"""

from django.contrib import admin

from payments.models import PaymentTransaction, ShopperRefund, Transfer, TransferReversal
from violet_refunds.admin import ReadOnlyAdminMixin, ReadOnlyTabularInline, money_display

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

"""Operator views of channels, orders and refunds.

Orders, bags and their lines mirror what the channel and the platforms said; refunds and their
history are written by refunds.services so that every status change has a RefundEvent. The admin
therefore shows those rows and lets operators edit only what is descriptive (a refund's reason) or
configuration (channels and their users). Operator actions (retry, mark external, cancel, resolve)
belong to the triage views built on RefundAdmin, each calling a service.
"""

from django.contrib import admin
from django.contrib.auth.hashers import identify_hasher
from django.db import models

from payments.admin import (
    ReadOnlyAdminMixin,
    ReadOnlyTabularInline,
    admin_link,
    money_display,
)
from payments.models import ShopperRefund, Transfer, TransferReversal
from refunds.models import (
    App,
    AppMembership,
    Bag,
    Order,
    OrderSku,
    Refund,
    RefundError,
    RefundEvent,
    RefundSku,
)
from violet_refunds.crypto import CredentialsUnreadable

# --- Channels ---


class AppMembershipInline(admin.TabularInline):
    model = AppMembership
    extra = 0
    fields = ("user", "role", "date_created")
    readonly_fields = ("date_created",)
    raw_id_fields = ("user",)
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "stripe_account_id", "commission_rate", "webhook_url", "date_created")
    search_fields = ("id__exact", "name", "stripe_account_id__exact")
    list_filter = ("date_created",)
    # The secret hash and the outbound webhook secret never appear in a form: they are issued by
    # services and only their presence is shown.
    fields = (
        "name",
        "api_secret",
        "stripe_account_id",
        "commission_rate",
        "webhook_url",
        "outbound_webhook_secret",
        "allowed_redirect_hosts",
        "date_created",
        "date_last_modified",
    )
    readonly_fields = ("api_secret", "outbound_webhook_secret", "date_created", "date_last_modified")
    inlines = (AppMembershipInline,)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        # Not needed by any list column, and a row encrypted under a retired key must not break pages.
        return super().get_queryset(request).defer("webhook_secret")

    @admin.display(description="API secret")
    def api_secret(self, app):
        if not app.secret_hash:
            return "Not set: the app cannot call the API until a secret is issued."
        try:
            algorithm = identify_hasher(app.secret_hash).algorithm
        except ValueError:
            return "Set (unrecognised hash format)"
        return f"Set (only a {algorithm} hash is stored)"

    @admin.display(description="Outbound webhook secret")
    def outbound_webhook_secret(self, app):
        try:
            return "Set" if app.webhook_secret else "Not set"
        except CredentialsUnreadable:
            return "Unreadable with the configured FIELD_ENCRYPTION_KEY"


@admin.register(AppMembership)
class AppMembershipAdmin(admin.ModelAdmin):
    list_display = ("id", "app", "user", "role", "date_created")
    list_filter = ("role",)
    search_fields = ("app__name", "user__username", "user__email")
    list_select_related = ("app", "user")
    raw_id_fields = ("app", "user")


# --- Orders, bags and their lines (read-only mirrors of the channel's and platforms' data) ---


class BagOfOrderInline(ReadOnlyTabularInline):
    model = Bag
    fields = ("external_id", "merchant", "status", "financial_status", "total_display", "placed_at")
    readonly_fields = fields
    list_select_related = ("merchant",)
    total_display = money_display("total", "currency", "Total")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "app_column",
        "app_order_id",
        "status",
        "total_display",
        "customer_email",
        "date_created",
    )
    list_filter = ("status", "currency", "date_created")
    search_fields = (
        "id__exact",
        "app_order_id__exact",
        "customer_email",
        "bags__external_id__exact",
        "payment_transaction__gateway_transaction_id__exact",
    )
    list_select_related = ("app",)
    raw_id_fields = ("app",)
    readonly_fields = ("total_display", "date_created", "date_last_modified")
    inlines = (BagOfOrderInline,)

    total_display = money_display("total", "currency", "Total")

    @admin.display(description="App", ordering="app__name")
    def app_column(self, order):
        return admin_link(order.app)


class OrderSkuOfBagInline(ReadOnlyTabularInline):
    model = OrderSku
    fields = (
        "external_id",
        "sku_id",
        "name",
        "quantity",
        "quantity_refunded",
        "price_display",
        "line_price_display",
    )
    readonly_fields = fields
    list_select_related = ("bag",)
    price_display = money_display("price", "bag.currency", "Price")
    line_price_display = money_display("line_price", "bag.currency", "Line price")


class RefundOfBagInline(ReadOnlyTabularInline):
    model = Refund
    fields = ("external_id", "status", "amount_display", "source", "reason_code", "date_created")
    readonly_fields = fields
    amount_display = money_display("amount", "refund_currency", "Amount")


class TransferOfBagInline(ReadOnlyTabularInline):
    model = Transfer
    fields = (
        "recipient",
        "gateway_transfer_id",
        "destination_account_id",
        "amount_display",
        "reversed_display",
        "status",
    )
    readonly_fields = fields
    amount_display = money_display("amount", "currency", "Amount")
    reversed_display = money_display("reversed_amount", "currency", "Reversed")


@admin.register(Bag)
class BagAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "external_id",
        "order_column",
        "merchant_column",
        "platform",
        "status",
        "financial_status",
        "total_display",
        "placed_at",
    )
    list_filter = ("status", "financial_status", "fulfillment_status", "merchant__platform", "placed_at")
    search_fields = (
        "id__exact",
        "external_id__exact",
        "order__id__exact",
        "order__app_order_id__exact",
        "merchant__name",
    )
    list_select_related = ("order", "merchant")
    raw_id_fields = ("order", "merchant")
    readonly_fields = (
        "sub_total_display",
        "shipping_total_display",
        "tax_total_display",
        "discount_total_display",
        "total_display",
        "date_created",
        "date_last_modified",
    )
    inlines = (OrderSkuOfBagInline, RefundOfBagInline, TransferOfBagInline)

    sub_total_display = money_display("sub_total", "currency", "Sub total")
    shipping_total_display = money_display("shipping_total", "currency", "Shipping total")
    tax_total_display = money_display("tax_total", "currency", "Tax total")
    discount_total_display = money_display("discount_total", "currency", "Discount total")
    total_display = money_display("total", "currency", "Total")

    @admin.display(description="Order", ordering="order_id")
    def order_column(self, bag):
        return admin_link(bag.order)

    @admin.display(description="Merchant", ordering="merchant__name")
    def merchant_column(self, bag):
        return admin_link(bag.merchant)

    @admin.display(description="Platform", ordering="merchant__platform")
    def platform(self, bag):
        return bag.merchant.get_platform_display()


@admin.register(OrderSku)
class OrderSkuAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "sku_id",
        "external_id",
        "bag",
        "quantity",
        "quantity_refunded",
        "price_display",
        "line_price_display",
    )
    list_filter = ("bag__merchant__platform", "date_created")
    search_fields = ("id__exact", "external_id__exact", "sku_id__exact", "name", "bag__external_id__exact")
    list_select_related = ("bag",)
    raw_id_fields = ("bag",)
    readonly_fields = ("price_display", "line_price_display", "date_created", "date_last_modified")

    price_display = money_display("price", "bag.currency", "Price")
    line_price_display = money_display("line_price", "bag.currency", "Line price")


# --- Refunds and their history ---


class RefundSkuInline(ReadOnlyTabularInline):
    model = RefundSku
    fields = ("order_sku", "external_id", "quantity_refunded", "amount_display")
    readonly_fields = fields
    list_select_related = ("order_sku", "refund")
    amount_display = money_display("amount_refunded", "refund.refund_currency", "Amount refunded")


class RefundErrorInline(ReadOnlyTabularInline):
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


class RefundEventInline(ReadOnlyTabularInline):
    model = RefundEvent
    fields = ("date_created", "kind", "from_status", "to_status", "actor", "message")
    readonly_fields = fields


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


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    """Refunds are recorded and moved only by refunds.services; here operators read them and may
    correct the descriptive reason. Money, status and identity fields are read-only."""

    list_display = (
        "id",
        "status",
        "merchant",
        "platform",
        "app",
        "amount_display",
        "source",
        "reason_code",
        "date_created",
    )
    list_filter = ("status", "source", "reason_code", "bag__merchant__platform", "date_created")
    search_fields = (
        "id__exact",
        "bag__order__id__exact",
        "bag__external_id__exact",
        "external_id__exact",
        "shopper_refund__gateway_refund_id__exact",
        "transfer_reversals__gateway_reversal_id__exact",
    )
    list_select_related = ("bag__merchant", "bag__order__app")
    raw_id_fields = ("bag", "inbound_event", "created_by")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "bag",
                    "external_id",
                    "status",
                    "source",
                    "reason_code",
                    "reason",
                    "restock_items",
                    "notify_customer",
                    "inbound_event",
                    "created_by",
                    "request_key",
                )
            },
        ),
        (
            "Amounts",
            {
                "fields": (
                    "amount_display",
                    "sub_total_amount",
                    "shipping_amount",
                    "shipping_tax_amount",
                    "tax_amount",
                    "refund_currency",
                    "platform_currency",
                    "shipping_full_refund",
                    "shipping_discrepancy_reason",
                    "merchant_transfer_reversal_amount_usd",
                    "developer_transfer_reversal_amount_usd",
                    "merchant_transfer_reversal_amount_platform_currency",
                    "developer_transfer_reversal_amount_platform_currency",
                )
            },
        ),
        (
            "Processing",
            {
                "fields": (
                    "attempts",
                    "processing_started_at",
                    "next_attempt_at",
                    "date_completed",
                    "date_created",
                    "date_last_modified",
                )
            },
        ),
    )
    # Everything except `reason_code` and `reason`: money and status change only through services.
    readonly_fields = (
        "bag",
        "external_id",
        "status",
        "source",
        "restock_items",
        "notify_customer",
        "inbound_event",
        "created_by",
        "request_key",
        "amount_display",
        "sub_total_amount",
        "shipping_amount",
        "shipping_tax_amount",
        "tax_amount",
        "refund_currency",
        "platform_currency",
        "shipping_full_refund",
        "shipping_discrepancy_reason",
        "merchant_transfer_reversal_amount_usd",
        "developer_transfer_reversal_amount_usd",
        "merchant_transfer_reversal_amount_platform_currency",
        "developer_transfer_reversal_amount_platform_currency",
        "attempts",
        "processing_started_at",
        "next_attempt_at",
        "date_completed",
        "date_created",
        "date_last_modified",
    )
    inlines = (
        RefundSkuInline,
        TransferReversalInline,
        ShopperRefundInline,
        RefundErrorInline,
        RefundEventInline,
    )

    amount_display = money_display("amount", "refund_currency", "Amount")

    def has_add_permission(self, request):
        # Refunds enter through refund_record, which also enqueues their processing.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Merchant", ordering="bag__merchant__name")
    def merchant(self, refund):
        return admin_link(refund.bag.merchant)

    @admin.display(description="Platform", ordering="bag__merchant__platform")
    def platform(self, refund):
        return refund.bag.merchant.get_platform_display()

    @admin.display(description="App", ordering="bag__order__app__name")
    def app(self, refund):
        return admin_link(refund.bag.order.app)


@admin.register(RefundSku)
class RefundSkuAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "refund", "order_sku", "quantity_refunded", "amount_display", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "external_id__exact", "order_sku__sku_id__exact")
    list_filter = ("date_created",)
    list_select_related = ("refund", "order_sku")
    raw_id_fields = ("refund", "order_sku")
    readonly_fields = ("amount_display",)

    amount_display = money_display("amount_refunded", "refund.refund_currency", "Amount refunded")


@admin.register(RefundError)
class RefundErrorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Errors are resolved through a service (with an audit event), not by ticking a box here."""

    list_display = (
        "id",
        "refund",
        "step",
        "error_code",
        "gateway_code",
        "short_message",
        "resolved",
        "date_created",
    )
    list_filter = ("resolved", "step", "gateway_code", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "gateway_code__exact", "error_message")
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "resolved_by")

    @admin.display(description="Message")
    def short_message(self, error):
        return error.error_message[:80]


@admin.register(RefundEvent)
class RefundEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only audit trail: nobody adds, edits or deletes an event by hand."""

    list_display = ("id", "refund", "kind", "from_status", "to_status", "actor", "date_created")
    list_filter = ("kind", "date_created")
    search_fields = ("id__exact", "refund__id__exact", "actor", "message")
    list_select_related = ("refund",)
    raw_id_fields = ("refund", "user")

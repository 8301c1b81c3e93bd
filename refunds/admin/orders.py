"""Operator views of orders, bags and their lines: read-only mirrors of what the channel and the
platforms said (with each bag's refunds and transfers under it).
"""

from __future__ import annotations

from django.contrib import admin

from payments.models import Transfer
from refunds.models import Bag, Order, OrderSku, Refund
from violet_refunds.admin import ReadOnlyAdminMixin, ReadOnlyTabularInline, admin_link, money_display


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

"""How the refund domain shows itself to channels: the Order Refund object (seed 004 + spec
section 1) and the Order with its bags and SKUs (docs/violet-api.md, Bags and orders).

One rendering for every reader: the channel API answers with `refund_representation`, and the
webhook bodies (refunds.announcements) are these same dicts, so an event's body equals what the API
returns. The serializers here only translate; refunds.api.serializers re-exports them for the
OpenAPI schema. Callers load the relations first (see `refund_representation`'s docstring).
"""

from collections.abc import Iterable
from datetime import UTC
from typing import cast

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from refunds.models import Order, ReasonCode, Refund, RefundStatus

# Violet's timestamps look like "2017-06-25T01:01:01+0000" (seed 004).
API_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
API_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$"


def format_api_datetime(value):
    return value.astimezone(UTC).strftime(API_DATETIME_FORMAT) if value else None


_DATETIME_SCHEMA = {
    "type": "string",
    "pattern": API_DATETIME_PATTERN,
    "example": "2017-06-25T01:01:01+0000",
}


@extend_schema_field(_DATETIME_SCHEMA)
class ApiDateTimeField(serializers.Field):
    """UTC, second precision, offset without a colon: the seed's format."""

    def to_representation(self, value):
        return format_api_datetime(value)


# --- Order Refund object (seed 004 + spec section 1) ---------------------------------------------


class RefundSkuSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    refund_id = serializers.IntegerField()
    bag_id = serializers.SerializerMethodField()
    quantity_refunded = serializers.IntegerField()
    external_id = serializers.CharField()
    order_sku_id = serializers.IntegerField()

    @extend_schema_field(OpenApiTypes.INT64)
    def get_bag_id(self, refund_sku) -> int:
        # The parent refund is cached on each SKU by prefetch_related: no query.
        return refund_sku.refund.bag_id


class RefundErrorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    refund_id = serializers.IntegerField()
    error_code = serializers.IntegerField()
    error_message = serializers.CharField()
    resolved = serializers.BooleanField()
    date_resolved = ApiDateTimeField(allow_null=True)
    date_created = ApiDateTimeField()


class RefundShippingSerializer(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Shipping refunded, minor units.")
    tax_amount = serializers.IntegerField(help_text="Tax on shipping refunded (part of tax_amount).")
    full_refund = serializers.BooleanField()
    discrepancy_reason = serializers.CharField(allow_null=True)


class RefundSerializer(serializers.Serializer):
    """The Order Refund object, exactly as seed 004 names and types its fields."""

    id = serializers.IntegerField()
    order_id = serializers.IntegerField(source="bag.order_id", help_text="ID of the Order being refunded")
    bag_id = serializers.IntegerField(help_text="ID of the Bag being refunded")
    merchant_id = serializers.IntegerField(source="bag.merchant_id")
    app_id = serializers.IntegerField(source="bag.order.app_id", help_text="ID of the App that created the Order")
    transaction_id = serializers.SerializerMethodField(help_text="ID of the Transaction being refunded")
    payment_transaction_id = serializers.SerializerMethodField()
    gateway_transaction_id = serializers.SerializerMethodField(help_text="ID of the Transaction in the Payment Gateway")
    amount = serializers.IntegerField(help_text="Amount being refunded, minor units of refund_currency.")
    # Seed 004 types these as integers: 0 until the reversal is known (never null).
    merchant_transfer_reversal_amount_usd = serializers.SerializerMethodField(
        help_text="Taken back from the merchant's transfer, cents; 0 until known."
    )
    developer_transfer_reversal_amount_usd = serializers.SerializerMethodField(
        help_text="Taken back from the channel's transfer, cents; 0 until known."
    )
    merchant_transfer_reversal_amount_platform_currency = serializers.SerializerMethodField(
        help_text="The same in the platform account's currency; 0 until known."
    )
    developer_transfer_reversal_amount_platform_currency = serializers.SerializerMethodField(
        help_text="The same in the platform account's currency; 0 until known."
    )
    reason = serializers.CharField()
    reason_code = serializers.ChoiceField(choices=ReasonCode.choices)
    refund_currency = serializers.CharField()
    platform_currency = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=RefundStatus.choices)
    transfer_reversals = serializers.SerializerMethodField(
        help_text="Gateway ids of the Transfer Reversals this refund made."
    )
    skus = RefundSkuSerializer(many=True)
    date_created = ApiDateTimeField()
    date_last_modified = ApiDateTimeField()
    external_id = serializers.SerializerMethodField(
        help_text="ID of the refund on the external commerce platform (or the merchant's reference); "
        "empty when it has none."
    )
    # The spec's `errors` key. The serializer metaclass pops declared fields off the class, so this
    # does not shadow Serializer.errors at runtime; the stubs see the class body only.
    errors = RefundErrorSerializer(many=True)  # type: ignore[assignment]
    shipping = serializers.SerializerMethodField(help_text="Refunded shipping, or null when none.")
    tax_amount = serializers.SerializerMethodField(help_text="Tax refunded (> 0), or null when none.")

    @staticmethod
    def _payment_transaction(refund: Refund):
        try:
            return refund.bag.order.payment_transaction
        except ObjectDoesNotExist:
            return None

    @extend_schema_field({"type": "integer", "format": "int64", "nullable": True})
    def get_transaction_id(self, refund) -> int | None:
        payment = self._payment_transaction(refund)
        return payment.pk if payment else None

    @extend_schema_field({"type": "integer", "format": "int64", "nullable": True})
    def get_payment_transaction_id(self, refund) -> int | None:
        return self.get_transaction_id(refund)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_gateway_transaction_id(self, refund) -> str | None:
        payment = self._payment_transaction(refund)
        return payment.gateway_transaction_id if payment else None

    @extend_schema_field({"type": "string", "minLength": 3, "maxLength": 3})
    def get_platform_currency(self, refund) -> str:
        # Before processing fixes it on the refund: the network account's currency, which it will be.
        return refund.platform_currency or settings.PLATFORM_CURRENCY

    @extend_schema_field({"type": "string"})
    def get_external_id(self, refund) -> str:
        return refund.external_id or ""

    @extend_schema_field({"type": "integer", "format": "int64", "minimum": 0})
    def get_merchant_transfer_reversal_amount_usd(self, refund) -> int:
        return refund.merchant_transfer_reversal_amount_usd or 0

    @extend_schema_field({"type": "integer", "format": "int64", "minimum": 0})
    def get_developer_transfer_reversal_amount_usd(self, refund) -> int:
        return refund.developer_transfer_reversal_amount_usd or 0

    @extend_schema_field({"type": "integer", "format": "int64", "minimum": 0})
    def get_merchant_transfer_reversal_amount_platform_currency(self, refund) -> int:
        return refund.merchant_transfer_reversal_amount_platform_currency or 0

    @extend_schema_field({"type": "integer", "format": "int64", "minimum": 0})
    def get_developer_transfer_reversal_amount_platform_currency(self, refund) -> int:
        return refund.developer_transfer_reversal_amount_platform_currency or 0

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_transfer_reversals(self, refund) -> list[str]:
        return [
            reversal.gateway_reversal_id for reversal in refund.transfer_reversals.all() if reversal.gateway_reversal_id
        ]

    @extend_schema_field(RefundShippingSerializer(allow_null=True))
    def get_shipping(self, refund) -> dict | None:
        if not refund.shipping_amount and not refund.shipping_tax_amount:
            return None
        return {
            "amount": refund.shipping_amount,
            "tax_amount": refund.shipping_tax_amount,
            "full_refund": refund.shipping_full_refund,
            "discrepancy_reason": refund.shipping_discrepancy_reason or None,
        }

    @extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "nullable": True})
    def get_tax_amount(self, refund) -> int | None:
        return refund.tax_amount or None


# --- the full Order (the body of order events) ---------------------------------------------------


class OrderSkuPayloadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    merchant_id = serializers.IntegerField(source="bag.merchant_id")
    app_id = serializers.IntegerField(source="bag.order.app_id")
    sku_id = serializers.CharField()
    external_id = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    price = serializers.IntegerField(help_text="Unit price, minor units.")
    line_price = serializers.IntegerField(help_text="price × quantity, minor units.")


class BagPayloadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    order_id = serializers.IntegerField()
    merchant_id = serializers.IntegerField()
    app_id = serializers.IntegerField(source="order.app_id")
    external_id = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    fulfillment_status = serializers.CharField()
    financial_status = serializers.CharField()
    platform = serializers.CharField(source="merchant.platform")
    merchant_name = serializers.CharField(source="merchant.name")
    skus = OrderSkuPayloadSerializer(many=True)
    sub_total = serializers.IntegerField()
    shipping_total = serializers.IntegerField()
    tax_total = serializers.IntegerField()
    discount_total = serializers.IntegerField()
    total = serializers.IntegerField()
    currency = serializers.CharField()
    # A percentage, not money: a JSON number as Violet's install object has it (two decimals).
    commission_rate = serializers.FloatField()
    date_created = ApiDateTimeField()
    date_last_modified = ApiDateTimeField()


class OrderPayloadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    app_id = serializers.IntegerField()
    app_order_id = serializers.CharField()
    status = serializers.CharField()
    currency = serializers.CharField()
    bags = BagPayloadSerializer(many=True)
    sub_total = serializers.IntegerField()
    shipping_total = serializers.IntegerField()
    tax_total = serializers.IntegerField()
    discount_total = serializers.IntegerField()
    total = serializers.IntegerField()
    date_created = ApiDateTimeField()
    date_last_modified = ApiDateTimeField()


# --- public functions -----------------------------------------------------------------------------


def refund_representation(refund: Refund) -> dict:
    """The Order Refund object. Reads refund.bag.order.payment_transaction, skus (each with its
    refund cached), errors and transfer_reversals: select or prefetch them to avoid a query each."""
    return RefundSerializer(refund).data


def refunds_representation(refunds: Iterable[Refund]) -> list[dict]:
    # many=True makes a ListSerializer (its data a ReturnList); the stubs type the call as the serializer.
    return cast("list[dict]", RefundSerializer(refunds, many=True).data)


def order_representation(order: Order) -> dict:
    """The full Order: its bags (with their merchants) and each bag's SKUs, in id order."""
    return OrderPayloadSerializer(order).data


def bags_representation(bags) -> list[dict]:
    """Bags as the Order shows them (each with its SKUs)."""
    return cast("list[dict]", BagPayloadSerializer(bags, many=True).data)  # a ReturnList, as above

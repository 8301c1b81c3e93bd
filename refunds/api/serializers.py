"""Shapes of the channel API: the Order Refund object (seed 004), login, refresh, the refund request,
and the error body. Serializers only translate; rules about money live in refunds.services.

Request fields are strict: amounts and quantities must be JSON integers (not 10.5, "1e9", "10" or
true), booleans must be JSON booleans, strings must be JSON strings, and unknown fields are
rejected, so a typo never silently turns into a full refund.
"""

from datetime import UTC

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from refunds.models import ReasonCode, Refund, RefundStatus

# Violet's timestamps look like "2017-06-25T01:01:01+0000" (seed 004).
API_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
API_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$"
MAX_INT64 = 2**63 - 1


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


# --- strict request fields -----------------------------------------------------------------------


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer. DRF's IntegerField would also take "10", 10.0 and true; money must not."""

    default_error_messages = {"invalid": "A whole number (JSON integer) is required."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", MAX_INT64)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "A boolean (true or false) is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "A string is required."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class RejectUnknownFieldsMixin:
    """A field this serializer does not declare is an error, not something to ignore."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class RejectUnknownFieldsSchema(OpenApiSerializerExtension):
    """Says in the schema what RejectUnknownFieldsMixin does: no properties beyond those listed."""

    target_class = RejectUnknownFieldsMixin
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


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
    merchant_transfer_reversal_amount_usd = serializers.IntegerField(allow_null=True)
    developer_transfer_reversal_amount_usd = serializers.IntegerField(allow_null=True)
    merchant_transfer_reversal_amount_platform_currency = serializers.IntegerField(allow_null=True)
    developer_transfer_reversal_amount_platform_currency = serializers.IntegerField(allow_null=True)
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
    external_id = serializers.CharField(
        allow_null=True, help_text="ID of the refund on the external commerce platform."
    )
    errors = RefundErrorSerializer(many=True)
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

    @extend_schema_field({"type": "string", "nullable": True})
    def get_platform_currency(self, refund) -> str | None:
        return refund.platform_currency or None

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


# --- POST /orders/{order_id}/bags/{bag_id}/refunds (spec 2.2) ------------------------------------


class RefundShippingRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Shipping to refund. A tax_amount here is also the refund's tax part."""

    amount = StrictIntegerField(min_value=0, help_text="Shipping to refund, minor units.")
    tax_amount = StrictIntegerField(
        min_value=0, required=False, allow_null=True, help_text="Tax charged on that shipping."
    )


class RefundSkuLineRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """One SKU of the bag to refund: how many, and optionally for how much."""

    order_sku_id = StrictIntegerField(min_value=1)
    quantity_refunded = StrictIntegerField(min_value=1)
    amount_refunded = StrictIntegerField(
        min_value=0,
        required=False,
        allow_null=True,
        help_text="This line's amount, minor units; price × quantity when omitted.",
    )


class RefundBagRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Every field optional: an empty body refunds everything still refundable on the bag."""

    amount_refunded = StrictIntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="Amount to refund, minor units; omitted: the whole remaining bag.",
    )
    reason = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    reason_code = StrictChoiceField(choices=ReasonCode.choices, required=False, allow_null=True)
    restock_items = StrictBooleanField(required=False, allow_null=True)
    notify_customer = StrictBooleanField(required=False, allow_null=True)
    shipping = RefundShippingRequestSerializer(required=False, allow_null=True)
    skus = serializers.ListField(
        child=RefundSkuLineRequestSerializer(),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=1000,
        help_text="SKUs to refund; omitted: every SKU's remaining quantity.",
    )

    def validate_skus(self, lines):
        if lines is None:
            return lines
        sku_ids = [line["order_sku_id"] for line in lines]
        if len(sku_ids) != len(set(sku_ids)):
            raise serializers.ValidationError("Each order_sku_id may appear only once.")
        return lines


# --- auth -----------------------------------------------------------------------------------------


class LoginRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """The app owner's username and password."""

    username = StrictCharField(min_length=1, max_length=254)
    password = StrictCharField(min_length=1, max_length=4096, trim_whitespace=False)


class LoginUserSerializer(serializers.Serializer):
    """The user object of spec section 3. `password` is always null: a hash never leaves."""

    id = serializers.IntegerField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    password = serializers.CharField(allow_null=True, help_text="Always null.")
    email = serializers.CharField()
    type = serializers.CharField()
    verified = serializers.BooleanField()
    status = serializers.CharField()
    date_created = ApiDateTimeField()
    date_last_modified = ApiDateTimeField()
    roles = serializers.ListField(child=serializers.CharField())
    tos_accepted = serializers.BooleanField()
    payment_configured = serializers.BooleanField()
    token = serializers.CharField(help_text="Access token for X-Violet-Token.")
    refresh_token = serializers.CharField(help_text="For GET /auth/token.")
    merchant_id = serializers.IntegerField(allow_null=True)
    store_url = serializers.CharField(allow_null=True)


class TokenRefreshResponseSerializer(serializers.Serializer):
    """A new access token."""

    token = serializers.CharField()


# --- errors ---------------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "integer"}],
        "description": "Stable machine-readable code (11: token expired).",
    }
)
class ErrorCodeField(serializers.Field):
    def to_representation(self, value):
        return value


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API (violet_refunds.exceptions.error_body)."""

    status = serializers.IntegerField()
    message = serializers.CharField()
    error_code = ErrorCodeField()
    timestamp = serializers.IntegerField(help_text="Epoch milliseconds.")
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False, help_text="Field errors, by request field."
    )

"""Shapes of the channel API: login, refresh, the refund request, and the error body. The Order
Refund object lives in refunds.representation (its serializers are re-exported here for the
schema). Serializers only translate; rules about money live in refunds.services.

Request fields are strict: amounts and quantities must be JSON integers (not 10.5, "1e9", "10" or
true), booleans must be JSON booleans, strings must be JSON strings, and unknown fields are
rejected, so a typo never silently turns into a full refund.
"""

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from refunds.models import ReasonCode

# The Order Refund object and the API's timestamps: defined with the refund domain's representation.
from refunds.representation import (  # noqa: F401 - re-exported: the API's shapes, and the schema's
    API_DATETIME_FORMAT,
    API_DATETIME_PATTERN,
    ApiDateTimeField,
    RefundErrorSerializer,
    RefundSerializer,
    RefundShippingSerializer,
    RefundSkuSerializer,
    format_api_datetime,
)

MAX_INT64 = 2**63 - 1


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


# What a CharField that refuses blanks accepts, as a pattern the schema states: some character that is
# neither whitespace (DRF trims it) nor NUL (DRF refuses it anywhere).
NON_BLANK_TEXT = RegexValidator(r"^[^\x00]*[^\s\x00][^\x00]*$", "This field may not be blank.")


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


# --- cancellations (spec 2.3; issue 14) ----------------------------------------------------------


class CancelRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Violet's cancel request: every field optional (send {} for the defaults)."""

    reason = StrictCharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    reason_code = StrictChoiceField(choices=ReasonCode.choices, required=False, allow_null=True)
    restock_items = StrictBooleanField(required=False, allow_null=True, help_text="Default true.")
    notify_customer = StrictBooleanField(required=False, allow_null=True, help_text="Default false.")


class CancelErrorSerializer(serializers.Serializer):
    error_code = serializers.CharField(
        help_text="bag_not_cancelable, platform_refused, platform_unavailable or nothing_to_refund."
    )
    message = serializers.CharField()


class CancelledBagSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    bag_id = serializers.IntegerField()
    merchant_id = serializers.IntegerField()
    external_order_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["CANCELED", "CANCELLATION_FAILURE"])
    originated_by = serializers.CharField(help_text='"VIOLET": cancelled through the API.')
    date_cancelled = serializers.DateTimeField(allow_null=True)
    refund = RefundSerializer(allow_null=True, help_text="The full refund of the bag (PROCESSING at first).")
    errors = CancelErrorSerializer(many=True)


class OrderCancellationSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    app_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["CANCELED", "PARTIALLY_CANCELED", "CANCELLATION_FAILURE"])
    cancelled_bags = CancelledBagSerializer(many=True)
    message = serializers.CharField()

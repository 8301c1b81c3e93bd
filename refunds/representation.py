"""How the refund domain shows itself to channels: the Order Refund object (seed 004 + spec
section 1) and the Order with its bags and SKUs (docs/violet-api.md, Bags and orders).

One rendering for every reader: the channel API answers with these dicts, and the webhook bodies
(refunds.announcements) are the same dicts, so an event's body equals what the API returns.

The Order Refund object has two renderers that must agree to the byte (tests/refunds/api/
test_refund_renderers.py proves it for every status, reason code and shape):
- on PostgreSQL, `REFUND_JSON` builds it inside the query (json_build_object / json_agg, timestamps
  already in the API's format): the API's GET endpoints and the outbox read a refund in one
  statement, however many SKUs, errors or reversals it has (refunds.selectors.refund_documents_*);
- on any other database (the embedded SQLite mode), `refund_representation` renders a loaded
  Refund in plain Python (callers load the relations first, see its docstring).
Neither goes through DRF: the serializers below are the OpenAPI schema's description of the same
objects (refunds.api.serializers re-exports them), and a test keeps them saying what the renderers
render. The Order (order events) is rendered in plain Python the same way.
"""

from collections.abc import Iterable
from datetime import UTC

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connections
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments.models import PaymentTransaction, TransferReversal
from refunds.models import Bag, Order, OrderSku, ReasonCode, Refund, RefundError, RefundSku, RefundStatus

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


# --- public functions: plain Python (any database) --------------------------------------------------


def _payment_transaction(refund: Refund) -> PaymentTransaction | None:
    try:
        return refund.bag.order.payment_transaction
    except ObjectDoesNotExist:
        return None


def refund_representation(refund: Refund) -> dict:
    """The Order Refund object, as RefundSerializer documents it. Reads refund.bag.order.
    payment_transaction, skus, errors and transfer_reversals: select or prefetch them to avoid a
    query each. REFUND_JSON renders the same object in PostgreSQL; keep the two in step."""
    payment = _payment_transaction(refund)
    payment_id = payment.pk if payment is not None else None
    bag = refund.bag
    bag_id = refund.bag_id
    shipping = None
    if refund.shipping_amount or refund.shipping_tax_amount:
        shipping = {
            "amount": refund.shipping_amount,
            "tax_amount": refund.shipping_tax_amount,
            "full_refund": refund.shipping_full_refund,
            "discrepancy_reason": refund.shipping_discrepancy_reason or None,
        }
    return {
        "id": refund.pk,
        "order_id": bag.order_id,
        "bag_id": bag_id,
        "merchant_id": bag.merchant_id,
        "app_id": bag.order.app_id,
        "transaction_id": payment_id,
        "payment_transaction_id": payment_id,
        "gateway_transaction_id": payment.gateway_transaction_id if payment is not None else None,
        "amount": refund.amount,
        "merchant_transfer_reversal_amount_usd": refund.merchant_transfer_reversal_amount_usd or 0,
        "developer_transfer_reversal_amount_usd": refund.developer_transfer_reversal_amount_usd or 0,
        "merchant_transfer_reversal_amount_platform_currency": (
            refund.merchant_transfer_reversal_amount_platform_currency or 0
        ),
        "developer_transfer_reversal_amount_platform_currency": (
            refund.developer_transfer_reversal_amount_platform_currency or 0
        ),
        "reason": refund.reason,
        "reason_code": str(refund.reason_code),
        "refund_currency": refund.refund_currency,
        "platform_currency": refund.platform_currency or settings.PLATFORM_CURRENCY,
        "status": str(refund.status),
        "transfer_reversals": [
            reversal.gateway_reversal_id for reversal in refund.transfer_reversals.all() if reversal.gateway_reversal_id
        ],
        "skus": [
            {
                "id": sku.pk,
                "refund_id": sku.refund_id,
                "bag_id": bag_id,
                "quantity_refunded": sku.quantity_refunded,
                "external_id": sku.external_id,
                "order_sku_id": sku.order_sku_id,
            }
            for sku in refund.skus.all()
        ],
        "date_created": format_api_datetime(refund.date_created),
        "date_last_modified": format_api_datetime(refund.date_last_modified),
        "external_id": refund.external_id or "",
        "errors": [
            {
                "id": error.pk,
                "refund_id": error.refund_id,
                "error_code": error.error_code,
                "error_message": error.error_message,
                "resolved": error.resolved,
                "date_resolved": format_api_datetime(error.date_resolved),
                "date_created": format_api_datetime(error.date_created),
            }
            for error in refund.errors.all()
        ],
        "shipping": shipping,
        "tax_amount": refund.tax_amount or None,
    }


def refunds_representation(refunds: Iterable[Refund]) -> list[dict]:
    return [refund_representation(refund) for refund in refunds]


def _order_sku_representation(sku: OrderSku, bag: Bag, app_id: int) -> dict:
    return {
        "id": sku.pk,
        "merchant_id": bag.merchant_id,
        "app_id": app_id,
        "sku_id": sku.sku_id,
        "external_id": sku.external_id,
        "name": sku.name,
        "quantity": sku.quantity,
        "price": sku.price,
        "line_price": sku.line_price,
    }


def _bag_representation(bag: Bag, app_id: int) -> dict:
    merchant = bag.merchant
    return {
        "id": bag.pk,
        "order_id": bag.order_id,
        "merchant_id": bag.merchant_id,
        "app_id": app_id,
        "external_id": bag.external_id,
        "status": bag.status,
        "fulfillment_status": bag.fulfillment_status,
        "financial_status": bag.financial_status,
        "platform": merchant.platform,
        "merchant_name": merchant.name,
        "skus": [_order_sku_representation(sku, bag, app_id) for sku in bag.skus.all()],
        "sub_total": bag.sub_total,
        "shipping_total": bag.shipping_total,
        "tax_total": bag.tax_total,
        "discount_total": bag.discount_total,
        "total": bag.total,
        "currency": bag.currency,
        "commission_rate": float(bag.commission_rate),
        "date_created": format_api_datetime(bag.date_created),
        "date_last_modified": format_api_datetime(bag.date_last_modified),
    }


def order_representation(order: Order) -> dict:
    """The full Order, as OrderPayloadSerializer documents it: its bags (with their merchants) and
    each bag's SKUs, in id order (prefetch them: refunds.announcements does)."""
    return {
        "id": order.pk,
        "app_id": order.app_id,
        "app_order_id": order.app_order_id,
        "status": order.status,
        "currency": order.currency,
        "bags": [_bag_representation(bag, order.app_id) for bag in order.bags.all()],
        "sub_total": order.sub_total,
        "shipping_total": order.shipping_total,
        "tax_total": order.tax_total,
        "discount_total": order.discount_total,
        "total": order.total,
        "date_created": format_api_datetime(order.date_created),
        "date_last_modified": format_api_datetime(order.date_last_modified),
    }


def bags_representation(bags: Iterable[Bag]) -> list[dict]:
    """Bags as the Order shows them (each with its SKUs)."""
    return [_bag_representation(bag, bag.order.app_id) for bag in bags]


# --- the Order Refund object rendered by PostgreSQL -------------------------------------------------


def refunds_render_in_sql(using: str = "default") -> bool:
    """Whether refunds are read with REFUND_JSON (PostgreSQL, unless REFUND_JSON_IN_SQL is off)."""
    return connections[using].vendor == "postgresql" and getattr(settings, "REFUND_JSON_IN_SQL", True)


def _api_datetime_sql(column: str) -> str:
    # format_api_datetime in SQL: UTC, whole seconds (to_char truncates, as strftime does), "+0000".
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+0000"')"""


_SKUS = RefundSku._meta.db_table
_ERRORS = RefundError._meta.db_table
_REVERSALS = TransferReversal._meta.db_table

# The Order Refund object of the row `r` (refunds_refund), its bag `b`, order `o` and payment `p`
# (LEFT JOIN: an order may have none), key for key as refund_representation renders it. One
# parameter: settings.PLATFORM_CURRENCY (REFUND_JSON_PARAMS). A json value (not jsonb: jsonb would
# reorder the keys); callers select it ::text and json.loads it, so DRF renders its bytes.
REFUND_JSON = f"""json_build_object(
    'id', r.id,
    'order_id', b.order_id,
    'bag_id', r.bag_id,
    'merchant_id', b.merchant_id,
    'app_id', o.app_id,
    'transaction_id', p.id,
    'payment_transaction_id', p.id,
    'gateway_transaction_id', p.gateway_transaction_id,
    'amount', r.amount,
    'merchant_transfer_reversal_amount_usd', COALESCE(r.merchant_transfer_reversal_amount_usd, 0),
    'developer_transfer_reversal_amount_usd', COALESCE(r.developer_transfer_reversal_amount_usd, 0),
    'merchant_transfer_reversal_amount_platform_currency',
        COALESCE(r.merchant_transfer_reversal_amount_platform_currency, 0),
    'developer_transfer_reversal_amount_platform_currency',
        COALESCE(r.developer_transfer_reversal_amount_platform_currency, 0),
    'reason', r.reason,
    'reason_code', r.reason_code,
    'refund_currency', r.refund_currency,
    'platform_currency', COALESCE(NULLIF(r.platform_currency, ''), %s),
    'status', r.status,
    'transfer_reversals', COALESCE(
        (SELECT json_agg(tr.gateway_reversal_id ORDER BY tr.id) FROM {_REVERSALS} tr
         WHERE tr.refund_id = r.id AND tr.gateway_reversal_id <> ''),
        '[]'),
    'skus', COALESCE(
        (SELECT json_agg(json_build_object(
            'id', s.id,
            'refund_id', s.refund_id,
            'bag_id', r.bag_id,
            'quantity_refunded', s.quantity_refunded,
            'external_id', s.external_id,
            'order_sku_id', s.order_sku_id) ORDER BY s.id)
         FROM {_SKUS} s WHERE s.refund_id = r.id),
        '[]'),
    'date_created', {_api_datetime_sql("r.date_created")},
    'date_last_modified', {_api_datetime_sql("r.date_last_modified")},
    'external_id', COALESCE(r.external_id, ''),
    'errors', COALESCE(
        (SELECT json_agg(json_build_object(
            'id', e.id,
            'refund_id', e.refund_id,
            'error_code', e.error_code,
            'error_message', e.error_message,
            'resolved', e.resolved,
            'date_resolved', {_api_datetime_sql("e.date_resolved")},
            'date_created', {_api_datetime_sql("e.date_created")}) ORDER BY e.id)
         FROM {_ERRORS} e WHERE e.refund_id = r.id),
        '[]'),
    'shipping', CASE WHEN r.shipping_amount = 0 AND r.shipping_tax_amount = 0 THEN NULL ELSE json_build_object(
        'amount', r.shipping_amount,
        'tax_amount', r.shipping_tax_amount,
        'full_refund', r.shipping_full_refund,
        'discrepancy_reason', NULLIF(r.shipping_discrepancy_reason, '')) END,
    'tax_amount', NULLIF(r.tax_amount, 0)
)"""  # noqa: S608 - table names and constants only; values are parameters

# The joins REFUND_JSON reads, after `FROM refunds_refund r`.
REFUND_JSON_JOINS = (
    f"JOIN {Bag._meta.db_table} b ON b.id = r.bag_id "
    f"JOIN {Order._meta.db_table} o ON o.id = b.order_id "
    f"LEFT JOIN {PaymentTransaction._meta.db_table} p ON p.order_id = o.id"
)


def refund_json_params() -> list:
    """REFUND_JSON's parameters."""
    return [settings.PLATFORM_CURRENCY]

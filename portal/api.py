"""The refund-notice API (SFCC Option 2 for merchants' engineering teams):
`POST /portal/api/refund-notices` with `Authorization: Bearer <merchant API key>`.

The same notice as the portal's "Report a refund" form, in minor units:

    {"platform_order_id": "00012345",            // or "bag_id": 42
     "skus": [{"external_id": "line-1", "quantity": 1},   // or {"order_sku_id": 7, ...}
              ...],
     "shipping_amount": 500, "tax_amount": 80,    // minor units (cents), default 0
     "sub_total_amount": 4000,                    // optional: less than price × quantity
     "reason_code": "CUSTOMER", "reason": "...", "reference": "RF-1001"}

201 with the refund when recorded, 200 with the same refund when this reference (or the
Idempotency-Key header) was already used for the order. Errors are JSON in the project's one shape
`{status, message, error_code, timestamp, errors?}`. The endpoint is authenticated by the key alone
(no session, so CSRF does not apply; DRF views are CSRF-exempt unless they use session auth).
"""

from __future__ import annotations

from django.http import Http404
from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework import status as http_status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from platforms.models import MerchantApiKey
from portal import keys
from portal.selectors import bag_get_for_merchant, bag_skus, merchant_accepts_refund_notices

# The channel API's Idempotency-Key rules, shared so both APIs read the header the same way.
from refunds.api.base import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    JsonAPIView,
    idempotency_key_from_request,
)
from refunds.api.serializers import NON_BLANK_TEXT, ErrorSerializer
from refunds.models import ReasonCode, Refund
from refunds.services import RequestMismatch
from refunds.services.notices import REASON_MAX_LENGTH, REFERENCE_MAX_LENGTH, NoticeLine, refund_notice_record
from violet_refunds.exceptions import NotFound, RequestUnprocessable

MAX_LINES = 300


class MerchantApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>`; the key's merchant is the only merchant the request can touch."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise AuthenticationFailed("Send your API key in the header: Authorization: Bearer <key>.")
        api_key = keys.api_key_authenticate(credentials.strip())
        if api_key is None:
            raise AuthenticationFailed("The API key is not valid or has been revoked.")
        return (None, api_key)

    def authenticate_header(self, request):
        return 'Bearer realm="refund-notices"'


class MerchantApiKeyScheme(OpenApiAuthenticationExtension):
    """The notice API in the OpenAPI document: a bearer key, not the channel's three headers."""

    target_class = MerchantApiKeyAuthentication
    name = "MerchantApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A merchant API key (vrk_...), created on the portal's API keys page.",
        }


class HasMerchantApiKey(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, MerchantApiKey)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: "500", 5.0, true and 1e3 are refused, so a client that sends
    major units as a float never has them read as cents."""

    default_error_messages = {"invalid": "Must be an integer (minor units, e.g. cents)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class NoticeLineSerializer(serializers.Serializer):
    exactly_one_of = (("order_sku_id", "external_id"),)  # stated in the schema (JsonBodySchema)

    order_sku_id = StrictIntegerField(required=False, min_value=1, max_value=2**63 - 1)
    external_id = serializers.CharField(
        required=False, max_length=255, validators=[NON_BLANK_TEXT], help_text="Line item id on your platform."
    )
    quantity = StrictIntegerField(min_value=1, max_value=1_000_000)

    def validate(self, attrs):
        if ("order_sku_id" in attrs) == ("external_id" in attrs):
            raise serializers.ValidationError("Give exactly one of order_sku_id or external_id.")
        return attrs


class RefundNoticeSerializer(serializers.Serializer):
    exactly_one_of = (("bag_id", "platform_order_id"),)

    bag_id = StrictIntegerField(required=False, min_value=1, max_value=2**63 - 1)
    platform_order_id = serializers.CharField(required=False, max_length=255, validators=[NON_BLANK_TEXT])
    # many=True hands max_length to the ListSerializer it makes; the stubs' __init__ does not list it.
    skus = NoticeLineSerializer(many=True, required=False, max_length=MAX_LINES)  # type: ignore[call-arg]
    sub_total_amount = StrictIntegerField(required=False, min_value=0)
    shipping_amount = StrictIntegerField(required=False, min_value=0, default=0)
    tax_amount = StrictIntegerField(required=False, min_value=0, default=0)
    currency = serializers.CharField(required=False, min_length=3, max_length=3, validators=[NON_BLANK_TEXT])
    reason_code = serializers.ChoiceField(choices=ReasonCode.choices, required=False, default=ReasonCode.OTHER)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=REASON_MAX_LENGTH, default="")
    reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, validators=[NON_BLANK_TEXT])

    def validate(self, attrs):
        if ("bag_id" in attrs) == ("platform_order_id" in attrs):
            raise serializers.ValidationError({"bag_id": ["Give exactly one of bag_id or platform_order_id."]})
        return attrs


class RefundNoticeLineResponseSerializer(serializers.Serializer):
    order_sku_id = serializers.IntegerField()
    external_id = serializers.CharField()
    quantity = serializers.IntegerField()


class RefundNoticeResponseSerializer(serializers.Serializer):
    """The refund a notice recorded (refund_notice_body)."""

    id = serializers.IntegerField()
    bag_id = serializers.IntegerField()
    platform_order_id = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    amount = serializers.IntegerField()
    sub_total_amount = serializers.IntegerField()
    shipping_amount = serializers.IntegerField()
    tax_amount = serializers.IntegerField()
    currency = serializers.CharField()
    reason_code = serializers.CharField()
    reference = serializers.CharField(allow_null=True)
    skus = RefundNoticeLineResponseSerializer(many=True)
    date_created = serializers.CharField()
    status_url = serializers.CharField()


_NOTICE_ERROR = ErrorSerializer


def _lines(bag, items: list[dict]) -> list[NoticeLine]:
    """Resolve each line to the bag's OrderSku (by our id or the platform's line id)."""
    skus = bag_skus(bag)
    by_external = {sku.external_id: sku for sku in skus if sku.external_id}
    lines, problems = [], []
    for index, item in enumerate(items):
        if "external_id" in item:
            sku = by_external.get(item["external_id"])
            if sku is None:
                problems.append(f"skus[{index}]: no line with external_id {item['external_id']!r} in this order.")
                continue
            lines.append(NoticeLine(order_sku_id=sku.pk, quantity=item["quantity"]))
        else:
            lines.append(NoticeLine(order_sku_id=item["order_sku_id"], quantity=item["quantity"]))
    if problems:
        raise RequestUnprocessable("The refund notice is invalid.", field_errors={"skus": problems})
    return lines


def refund_notice_body(refund: Refund, request) -> dict:
    bag = refund.bag
    return {
        "id": refund.pk,
        "bag_id": bag.pk,
        "platform_order_id": bag.external_id,
        "status": refund.status,
        "amount": refund.amount,
        "sub_total_amount": refund.sub_total_amount,
        "shipping_amount": refund.shipping_amount,
        "tax_amount": refund.tax_amount,
        "currency": refund.refund_currency,
        "reason_code": refund.reason_code,
        "reference": refund.external_id,
        "skus": [
            {
                "order_sku_id": line.order_sku_id,
                "external_id": line.external_id,
                "quantity": line.quantity_refunded,
            }
            for line in refund.skus.order_by("pk")
        ],
        "date_created": refund.date_created.isoformat(),
        "status_url": request.build_absolute_uri(reverse("portal:refund_detail", args=[refund.pk])),
    }


class RefundNoticeApi(JsonAPIView):
    """JSON only, bodies read like the channel API's (refunds.api.base.JsonAPIView)."""

    authentication_classes = [MerchantApiKeyAuthentication]
    permission_classes = [HasMerchantApiKey]

    @extend_schema(
        operation_id="create_refund_notice",
        summary="Notify a refund made in your store (Salesforce Commerce Cloud, Option 2)",
        description=(
            "Merchant API (Authorization: Bearer <merchant API key>), not a channel endpoint. Amounts in minor "
            "units. The same reference (or Idempotency-Key) with the same notice answers 200 with the first "
            "refund; with a different notice, 422 idempotency_key_reused naming it."
        ),
        request=RefundNoticeSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_KEY_HEADER,
                {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH},
                OpenApiParameter.HEADER,
                required=False,
            )
        ],
        responses={
            201: OpenApiResponse(RefundNoticeResponseSerializer, description="Refund recorded."),
            200: OpenApiResponse(RefundNoticeResponseSerializer, description="The same notice again: its refund."),
            400: OpenApiResponse(_NOTICE_ERROR, description="Invalid body (`errors` by field)."),
            401: OpenApiResponse(_NOTICE_ERROR, description="Missing, unknown or revoked API key."),
            403: OpenApiResponse(_NOTICE_ERROR, description="This merchant's refunds are read from its platform."),
            404: OpenApiResponse(_NOTICE_ERROR, description="No such order for this merchant."),
            413: OpenApiResponse(_NOTICE_ERROR, description="Body larger than the limit."),
            415: OpenApiResponse(_NOTICE_ERROR, description="Body not sent as application/json."),
            422: OpenApiResponse(
                _NOTICE_ERROR,
                description="Well-formed, but not possible for this order now (validation_failed, `errors` by "
                "field: more than is left, a line not in the order, another currency, nothing to refund); or "
                "the reference or key already used for another notice (idempotency_key_reused).",
            ),
        },
        tags=["merchant notices"],
    )
    def post(self, request):
        api_key: MerchantApiKey = request.auth
        request_key = idempotency_key_from_request(request)
        serializer = RefundNoticeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            bag = bag_get_for_merchant(
                api_key.merchant, bag_id=data.get("bag_id"), platform_order_id=data.get("platform_order_id")
            )
        except Http404:
            raise NotFound("Order not found.") from None
        if data.get("currency") and data["currency"].upper() != bag.currency:
            raise RequestUnprocessable(
                "The refund is invalid.",
                field_errors={
                    "currency": [f"The order is in {bag.currency}; a refund in {data['currency']} is not possible."]
                },
            )
        try:
            refund_result = self._record(api_key, bag, data, request_key)
        except RequestMismatch as exc:
            raise RequestMismatch(
                exc.message,
                field_errors={
                    IDEMPOTENCY_KEY_HEADER if f == "request_key" else f: v for f, v in exc.field_errors.items()
                },
            ) from None
        return Response(
            refund_notice_body(refund_result.refund, request),
            status=http_status.HTTP_201_CREATED if refund_result.created else http_status.HTTP_200_OK,
        )

    @staticmethod
    def _record(api_key: MerchantApiKey, bag, data: dict, request_key: str | None):
        return refund_notice_record(
            bag=bag,
            actor=f"merchant-api-key:{api_key.prefix}",
            user=None,
            notices_enabled=merchant_accepts_refund_notices(bag.merchant),
            lines=_lines(bag, data.get("skus") or []),
            items_amount=data.get("sub_total_amount"),
            shipping_amount=data["shipping_amount"],
            tax_amount=data["tax_amount"],
            reason_code=data["reason_code"],
            reason=data["reason"],
            reference=data["reference"],
            request_key=request_key,
        )

"""Channel API views: thin callers of refunds.selectors (reads) and refunds.services (writes).

Every lookup goes through a selector scoped to the authenticated app, so another app's order, bag
or refund raises DoesNotExist and becomes the same 404 as an id that never existed.
"""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework import status as http_status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from refunds import selectors
from refunds.api import serializers as api
from refunds.api.auth import TokenType, VioletAuthentication, login_owner, token_issue
from refunds.api.base import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    ChannelAPIView,
    JsonAPIView,
    idempotency_key_from_request,
)
from refunds.models import Bag, Order, Refund, RefundSource
from refunds.services import RefundSkuLine, refund_record
from violet_refunds.exceptions import NotFound, ValidationFailed

_ERROR = api.ErrorSerializer
_AUTH_ERRORS = {
    401: OpenApiResponse(_ERROR, description="Missing, wrong or expired credentials."),
}
# Every endpoint that reads a body (refunds.api.base.json_object_required).
BODY_ERRORS = {
    400: OpenApiResponse(_ERROR, description="Invalid body or fields (`errors` by field)."),
    413: OpenApiResponse(_ERROR, description="Body larger than the limit (payload_too_large)."),
    415: OpenApiResponse(_ERROR, description="Body not sent as application/json (unsupported_media_type)."),
}
_READ_ERRORS = {**_AUTH_ERRORS, 404: OpenApiResponse(_ERROR, description="No such id for this app.")}

# The service names the parts of a refund; the request names what the channel sent. An error on
# a part the channel gave directly is reported on the field it came from.
_SERVICE_FIELD_TO_REQUEST_FIELD = {
    "amount": "amount_refunded",
    "shipping_amount": "shipping",
    "shipping_tax_amount": "shipping",
    "tax_amount": "shipping",
    "sub_total_amount": "skus",
    "request_key": IDEMPOTENCY_KEY_HEADER,
}


_PATH_ID_DESCRIPTIONS = {
    "order_id": "ID of the Order",
    "bag_id": "ID of the Bag",
    "refund_id": "ID of the Refund",
}


# Ids are positive 64-bit integers: the schema states the range the server serves (0 or a negative
# id is never found).
ID_SCHEMA = {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}


def _path_ids(*names: str) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(name, ID_SCHEMA, OpenApiParameter.PATH, description=_PATH_ID_DESCRIPTIONS[name])
        for name in names
    ]


def _not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found.")


# --- auth ----------------------------------------------------------------------------------------


def _login_user_payload(*, user, app, token: str, refresh_token: str) -> dict:
    return {
        "id": user.pk,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "password": None,
        "email": user.email,
        "type": "DEVELOPER",
        "verified": True,
        "status": "ACTIVE",
        "date_created": user.date_joined,
        "date_last_modified": user.date_joined,
        "roles": ["ROLE_DEVELOPER"],
        "tos_accepted": True,
        "payment_configured": bool(app.stripe_account_id),
        "token": token,
        "refresh_token": refresh_token,
        "merchant_id": None,
        "store_url": None,
    }


class LoginView(JsonAPIView):
    def get_authenticators(self):
        return [VioletAuthentication(token_type=None)]

    @extend_schema(
        operation_id="login",
        summary="Log in as the app's owner",
        request=api.LoginRequestSerializer,
        responses={
            200: api.LoginUserSerializer,
            **BODY_ERRORS,
            **_AUTH_ERRORS,
            403: OpenApiResponse(_ERROR, description="The user is not the app's owner."),
            429: OpenApiResponse(
                _ERROR, description="Too many login attempts from this address or for this username (Retry-After)."
            ),
        },
        tags=["auth"],
    )
    def post(self, request):
        serializer = api.LoginRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        app = request.auth.app
        user = login_owner(
            request=request._request,
            app=app,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        payload = _login_user_payload(
            user=user,
            app=app,
            token=token_issue(user=user, app=app, token_type=TokenType.ACCESS),
            refresh_token=token_issue(user=user, app=app, token_type=TokenType.REFRESH),
        )
        return Response(api.LoginUserSerializer(payload).data)


class TokenRefreshView(JsonAPIView):
    def get_authenticators(self):
        return [VioletAuthentication(token_type=TokenType.REFRESH)]

    @extend_schema(
        operation_id="refresh_token",
        summary="Exchange a refresh token (in X-Violet-Token) for a new access token",
        responses={200: api.TokenRefreshResponseSerializer, **_AUTH_ERRORS},
        tags=["auth"],
    )
    def get(self, request):
        token = token_issue(user=request.user, app=request.auth.app, token_type=TokenType.ACCESS)
        return Response({"token": token})


# --- refunds -------------------------------------------------------------------------------------


class RefundDetailView(ChannelAPIView):
    @extend_schema(
        operation_id="get_order_refund",
        summary="Get one refund of an order",
        parameters=_path_ids("order_id", "refund_id"),
        responses={200: api.RefundSerializer, **_READ_ERRORS},
        tags=["refunds"],
    )
    def get(self, request, order_id: int, refund_id: int):
        try:
            document = selectors.refund_document_for_app(self.app, order_id, refund_id)
        except Refund.DoesNotExist:
            raise _not_found("Refund") from None
        return Response(document)


class OrderRefundsView(ChannelAPIView):
    @extend_schema(
        operation_id="list_order_refunds",
        summary="List the refunds of an order",
        parameters=_path_ids("order_id"),
        responses={200: api.RefundSerializer(many=True), **_READ_ERRORS},
        tags=["refunds"],
    )
    def get(self, request, order_id: int):
        try:
            documents = selectors.refund_documents_for_order(self.app, order_id)
        except Order.DoesNotExist:
            raise _not_found("Order") from None
        return Response(documents)


def _refund_record_arguments(data: dict) -> dict:
    """The request's fields as refund_record's keyword arguments (omitted = not given)."""
    arguments = {
        "amount": data.get("amount_refunded"),
        "reason": data.get("reason") or "",
        "restock_items": bool(data.get("restock_items")),
        "notify_customer": bool(data.get("notify_customer")),
    }
    if data.get("reason_code"):
        arguments["reason_code"] = data["reason_code"]
    shipping = data.get("shipping")
    if shipping is not None:
        arguments["shipping_amount"] = shipping["amount"]
        shipping_tax = shipping.get("tax_amount") or 0
        if shipping_tax:
            # The request has no other tax field, so the tax refunded is the shipping's tax.
            arguments["shipping_tax_amount"] = shipping_tax
            arguments["tax_amount"] = shipping_tax
    if data.get("skus"):
        arguments["skus"] = [
            RefundSkuLine(
                order_sku_id=line["order_sku_id"],
                quantity=line["quantity_refunded"],
                amount=line.get("amount_refunded"),
            )
            for line in data["skus"]
        ]
    return arguments


def _request_field_errors(field_errors: dict) -> dict:
    mapped: dict[str, list] = {}
    for field, messages in field_errors.items():
        request_field = _SERVICE_FIELD_TO_REQUEST_FIELD.get(field, field)
        messages = messages if isinstance(messages, list) else [messages]
        mapped.setdefault(request_field, []).extend(messages)
    return mapped


class BagRefundsView(ChannelAPIView):
    @extend_schema(
        operation_id="list_bag_refunds",
        summary="List the refunds of one bag",
        parameters=_path_ids("order_id", "bag_id"),
        responses={200: api.RefundSerializer(many=True), **_READ_ERRORS},
        tags=["refunds"],
    )
    def get(self, request, order_id: int, bag_id: int):
        try:
            documents = selectors.refund_documents_for_bag(self.app, order_id, bag_id)
        except Bag.DoesNotExist:
            raise _not_found("Bag") from None
        return Response(documents)

    @extend_schema(
        operation_id="refund_bag",
        summary="Refund a bag (all of it, an amount, or some SKUs)",
        description=(
            "Omit amount_refunded and skus to refund everything still refundable on the bag. "
            "Send {} for that: the body is always a JSON object. "
            "Send an Idempotency-Key header to make retries safe: repeating a key with the same request "
            "returns the refund the first request created (200) and creates nothing; the same key with a "
            "different request is a 422. "
            "The refund is first recorded on the merchant's platform where the platform can take it, then "
            "its money moves: it stays PROCESSING until then, and ends FAILED with the platform's message in "
            "errors[] (error_code 3100, nothing moved) when the platform refuses it. Where the platform cannot "
            "take it, the merchant is asked to mirror it and the money moves at once."
        ),
        request=api.RefundBagRequestSerializer,
        parameters=[
            *_path_ids("order_id", "bag_id"),
            OpenApiParameter(
                IDEMPOTENCY_KEY_HEADER,
                {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH},
                OpenApiParameter.HEADER,
                required=False,
                description="Any unique string per intended refund (at most 255 characters).",
            ),
        ],
        responses={
            201: OpenApiResponse(api.RefundSerializer, description="Refund recorded (PROCESSING)."),
            200: OpenApiResponse(api.RefundSerializer, description="Repeated Idempotency-Key: the first refund."),
            **BODY_ERRORS,
            **_READ_ERRORS,
            422: OpenApiResponse(
                _ERROR,
                description="Well-formed, but not possible for this bag now (validation_failed, `errors` by "
                "field: more than is left, a line of another bag, another currency, nothing to refund); or the "
                "Idempotency-Key was already used for a different request (idempotency_key_reused; the "
                "message names the first refund).",
            ),
        },
        tags=["refunds"],
    )
    def post(self, request, order_id: int, bag_id: int):
        app = self.app
        try:
            bag = selectors.bag_get_for_app(app, order_id, bag_id)
        except Bag.DoesNotExist:
            raise _not_found("Bag") from None
        request_key = idempotency_key_from_request(request)
        serializer = api.RefundBagRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = refund_record(
                bag=bag,
                source=RefundSource.CHANNEL_API,
                actor=f"channel:{app.pk}",
                request_key=request_key,
                user=request.user,
                **_refund_record_arguments(serializer.validated_data),
            )
        except ValidationFailed as exc:  # and RequestMismatch (422), which keeps its status
            raise type(exc)(
                exc.message, error_code=exc.error_code, field_errors=_request_field_errors(exc.field_errors)
            ) from exc
        return Response(
            selectors.refund_document_for_app(app, order_id, result.refund.pk),
            status=http_status.HTTP_201_CREATED if result.created else http_status.HTTP_200_OK,
        )


# --- cancellations (spec 2.3; issue 14) ------------------------------------------------------------


_DATE = serializers.DateTimeField()


def _cancel_arguments(data: dict) -> dict:
    """Violet's defaults: reason_code OTHER, restock_items true, notify_customer false."""
    return {
        "reason": data.get("reason") or "",
        "reason_code": data.get("reason_code") or "OTHER",
        "restock_items": True if data.get("restock_items") is None else bool(data["restock_items"]),
        "notify_customer": bool(data.get("notify_customer")),
    }


def _cancelled_bag(app, result) -> dict:
    refund = (
        selectors.refund_document_for_app(app, result.bag.order_id, result.refund.pk)
        if result.refund is not None
        else None
    )
    return {
        "order_id": result.bag.order_id,
        "bag_id": result.bag.pk,
        "merchant_id": result.bag.merchant_id,
        "external_order_id": result.bag.external_id,
        "status": result.status,
        "originated_by": "VIOLET",
        "date_cancelled": _DATE.to_representation(result.date_cancelled) if result.date_cancelled else None,
        "refund": refund,
        "errors": [{"error_code": e.error_code, "message": e.message} for e in result.errors],
    }


def _order_cancellation(app, order_id: int, results) -> dict:
    done = [r for r in results if r.status == "CANCELED"]
    if results and len(done) == len(results):
        status, message = "CANCELED", "All external orders were cancelled."
    elif done:
        status, message = "PARTIALLY_CANCELED", f"{len(done)} of {len(results)} external orders were cancelled."
    else:
        status, message = "CANCELLATION_FAILURE", "No external order was cancelled."
    # Built as the OrderCancellationSerializer documents it; the refunds are already rendered.
    return {
        "order_id": order_id,
        "app_id": app.pk,
        "status": status,
        "cancelled_bags": [_cancelled_bag(app, r) for r in results],
        "message": message,
    }


_CANCEL_DESCRIPTION = (
    "Cancels at the merchant's platform first (where the platform can be written to), then refunds "
    "everything still refundable on the bag (a channel refund, forwarded to the platform like any other) and "
    "sends ORDER_CANCELLED. Eligible bags: ACCEPTED, SUBMITTED, COMPLETED, PARTIALLY_REFUNDED; any other, a "
    "platform refusal, or a platform that is unreachable and shows the order not cancelled when read back is a "
    "CANCELLATION_FAILURE with `errors` (200), and nothing was cancelled or refunded for that bag. When the "
    "platform's answer was lost and its order cannot be read back either, the outcome is unknown: 503 "
    "`cancellation_outcome_unknown` with Retry-After, nothing recorded for that bag (bags this request did cancel "
    "are listed in `cancelled_bag_ids`); send the same request again. An Idempotency-Key makes a repeat answer "
    "the first cancellation; the same key with a different body is a 422."
)


def _cancel_schema(operation_id: str, summary: str, *path_ids: str):
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=_CANCEL_DESCRIPTION,
        request=api.CancelRequestSerializer,
        parameters=[
            *_path_ids(*path_ids),
            OpenApiParameter(
                IDEMPOTENCY_KEY_HEADER,
                {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH},
                OpenApiParameter.HEADER,
                required=False,
                description="Any unique string per intended cancellation (at most 255 characters).",
            ),
        ],
        responses={
            200: OpenApiResponse(api.OrderCancellationSerializer, description="The cancellation, bag by bag."),
            **BODY_ERRORS,
            **_READ_ERRORS,
            422: OpenApiResponse(_ERROR, description="The Idempotency-Key was already used for a different request."),
            503: OpenApiResponse(
                _ERROR,
                description="cancellation_outcome_unknown: the platform may or may not have cancelled; nothing was "
                "recorded for the bags named in `outcome_unknown_bag_ids`. Send the same request again after "
                "Retry-After seconds.",
            ),
        },
        tags=["cancellations"],
    )


def _cancel_bags(request, app, bags) -> list:
    from platforms.cancellation import (  # the face reaches the platforms service
        bag_cancel,
        cancellations_outcome_check,
    )

    request_key = idempotency_key_from_request(request)
    serializer = api.CancelRequestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    arguments = _cancel_arguments(serializer.validated_data)
    try:
        return cancellations_outcome_check(
            [
                bag_cancel(bag=bag, actor=f"channel:{app.pk}", user=request.user, request_key=request_key, **arguments)
                for bag in bags
            ]
        )
    except ValidationFailed as exc:  # RequestMismatch (422) keeps its status
        raise type(exc)(
            exc.message, error_code=exc.error_code, field_errors=_request_field_errors(exc.field_errors)
        ) from exc


class OrderCancelView(ChannelAPIView):
    @_cancel_schema("cancel_order", "Cancel every bag of an order", "order_id")
    def post(self, request, order_id: int):
        try:
            order = selectors.order_get_for_app(self.app, order_id)
        except Order.DoesNotExist:
            raise _not_found("Order") from None
        bags = list(Bag.objects.filter(order=order).select_related("merchant").order_by("pk"))
        results = _cancel_bags(request, self.app, bags)
        return Response(_order_cancellation(self.app, order.pk, results))


class BagCancelView(ChannelAPIView):
    @_cancel_schema("cancel_bag", "Cancel one bag of an order", "order_id", "bag_id")
    def post(self, request, order_id: int, bag_id: int):
        try:
            bag = selectors.bag_get_for_app(self.app, order_id, bag_id)
        except Bag.DoesNotExist:
            raise _not_found("Bag") from None
        results = _cancel_bags(request, self.app, [bag])
        return Response(_order_cancellation(self.app, order_id, results))


class UnknownEndpointView(JsonAPIView):
    """Anything else under /v1/: the API's JSON 404, never Django's HTML page."""

    authentication_classes = []
    permission_classes = [AllowAny]  # public: its only answer is the JSON 404
    schema = None  # type: ignore[assignment]  # not in the OpenAPI document
    json_body_methods = frozenset()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise NotFound("No such endpoint.")

"""Channel API for outbound webhooks, under /v1/ with the refunds API's auth and error shape:

- `POST/GET /events/webhooks`, `GET/PATCH/DELETE /events/webhooks/{webhook_id}`
- `GET /events` (the app's events, newest first, paginated; filters type, order_id, bag_id)
- `POST /events/{event_id}/resend`
- `POST /events/webhooks/{webhook_id}/test` (a signed TEST event to that webhook)

Every lookup is scoped to the authenticated app: another app's id is the same 404 as no id at all.
"""

import math
import uuid

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiCallback, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status as http_status
from rest_framework.response import Response

from notifications import selectors, services
from notifications import serializers as api
from notifications.models import EventType, WebhookEndpoint, WebhookEvent
from refunds.api.base import ChannelAPIView
from refunds.api.serializers import ErrorSerializer
from violet_refunds.exceptions import NotFound
from violet_refunds.throttling import CredentialRateThrottle, WebhookTestRateThrottle

_AUTH_ERRORS = {401: OpenApiResponse(ErrorSerializer, description="Missing, wrong or expired credentials.")}
_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such id for this app.")}
_INVALID = {400: OpenApiResponse(ErrorSerializer, description="Invalid request (field errors in `errors`).")}
# Every endpoint that reads a body: a JSON object (refunds.api.base.json_object_required).
_BODY = {
    **_INVALID,
    413: OpenApiResponse(ErrorSerializer, description="Body larger than the limit (payload_too_large)."),
    415: OpenApiResponse(ErrorSerializer, description="Body not sent as application/json."),
}
_CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="Conflicts with the app's webhooks or their state.")}
_UNPROCESSABLE_URL = {
    422: OpenApiResponse(ErrorSerializer, description="A well-formed URL that names no address (a port out of range).")
}

_ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}
_WEBHOOK_ID = OpenApiParameter("webhook_id", _ID, OpenApiParameter.PATH, description="ID of the Webhook")
_EVENT_ID = OpenApiParameter("event_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="ID of the Event")


_DELIVERY_HEADERS = (
    "Headers: Content-Type: application/json; X-Violet-Hmac (Base64 HMAC-SHA256 of the raw body with the "
    "webhook's signing_secret); X-Violet-Event-Id (dedupe on it); X-Violet-Webhook-Id; X-Violet-Topic (the "
    "event type); X-Violet-Order-Id; X-Violet-Bag-Id; X-Violet-Entity-Length (body bytes); "
    "X-Violet-Event-Id-Source (resends only); a TEST event has no X-Violet-Order-Id or X-Violet-Bag-Id. "
    "Answer 2xx within 10 s; anything else is retried."
)
# What each event type POSTs to remote_endpoint: one callback, and one body schema, per type.
_WEBHOOK_CALLBACKS = [
    OpenApiCallback(
        event_type,
        "{$request.body#/remote_endpoint}",
        extend_schema(
            summary=f"{event_type}: {label}",
            description=_DELIVERY_HEADERS,
            request=api.WEBHOOK_BODY_SERIALIZERS[event_type],
            responses={200: OpenApiResponse(description="Any 2xx acknowledges the event.")},
        ),
    )
    for event_type, label in EventType.choices
]


def _actor(view) -> str:
    return f"channel:{view.app.pk}"


def _webhook_data(endpoints):
    endpoints = list(endpoints)
    context = {"stats": selectors.endpoint_stats([e.pk for e in endpoints]), "now": timezone.now()}
    return api.WebhookSerializer(endpoints, many=True, context=context).data


class _WebhookView(ChannelAPIView):
    def endpoint(self, webhook_id: int) -> WebhookEndpoint:
        try:
            return selectors.endpoint_get_for_app(self.app, webhook_id)
        except WebhookEndpoint.DoesNotExist:
            raise NotFound("Webhook not found.") from None


class WebhooksView(_WebhookView):
    @extend_schema(
        operation_id="list_webhooks",
        summary="List the app's webhooks",
        responses={200: api.WebhookSerializer(many=True), **_AUTH_ERRORS},
        tags=["webhooks"],
    )
    def get(self, request):
        return Response(_webhook_data(selectors.endpoint_list_for_app(self.app)))

    @extend_schema(
        operation_id="create_webhook",
        summary="Register a webhook",
        description=(
            "Events are POSTed as JSON to remote_endpoint (HTTPS) with X-Violet-Hmac = Base64(HMAC-SHA256(raw "
            "body, signing_secret)). The signing_secret is in this response only: store it."
        ),
        request=api.WebhookCreateRequestSerializer,
        responses={201: api.WebhookCreatedSerializer, **_BODY, **_AUTH_ERRORS, **_CONFLICT, **_UNPROCESSABLE_URL},
        callbacks=_WEBHOOK_CALLBACKS,
        tags=["webhooks"],
    )
    def post(self, request):
        serializer = api.WebhookCreateRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        registered = services.webhook_endpoint_register(
            app=self.app, url=data["remote_endpoint"], event_types=data.get("events") or [], actor=_actor(self)
        )
        body = {**_webhook_data([registered.endpoint])[0], "signing_secret": registered.signing_secret}
        return Response(body, status=http_status.HTTP_201_CREATED)


class WebhookDetailView(_WebhookView):
    @extend_schema(
        operation_id="get_webhook",
        summary="Get one webhook",
        parameters=[_WEBHOOK_ID],
        responses={200: api.WebhookSerializer, **_AUTH_ERRORS, **_NOT_FOUND},
        tags=["webhooks"],
    )
    def get(self, request, webhook_id: int):
        return Response(_webhook_data([self.endpoint(webhook_id)])[0])

    @extend_schema(
        operation_id="update_webhook",
        summary="Change a webhook's URL or events; resume (ACTIVE) or disable (DISABLED) it",
        parameters=[_WEBHOOK_ID],
        request=api.WebhookUpdateRequestSerializer,
        responses={
            200: api.WebhookSerializer,
            **_BODY,
            **_AUTH_ERRORS,
            **_NOT_FOUND,
            **_CONFLICT,
            **_UNPROCESSABLE_URL,
        },
        tags=["webhooks"],
    )
    def patch(self, request, webhook_id: int):
        endpoint = self.endpoint(webhook_id)
        serializer = api.WebhookUpdateRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        endpoint = services.webhook_endpoint_update(
            endpoint=endpoint,
            actor=_actor(self),
            url=data.get("remote_endpoint"),
            event_types=data.get("events"),
            status=data.get("status"),
        )
        return Response(_webhook_data([endpoint])[0])

    @extend_schema(
        operation_id="delete_webhook",
        summary="Delete a webhook (its pending deliveries with it)",
        parameters=[_WEBHOOK_ID],
        responses={204: None, **_AUTH_ERRORS, **_NOT_FOUND},
        tags=["webhooks"],
    )
    def delete(self, request, webhook_id: int):
        services.webhook_endpoint_delete(endpoint=self.endpoint(webhook_id), actor=_actor(self))
        return Response(status=http_status.HTTP_204_NO_CONTENT)


class WebhookTestView(_WebhookView):
    throttle_classes = [CredentialRateThrottle, WebhookTestRateThrottle]
    json_body_methods = frozenset()  # takes nothing: a bare POST (a body, if any, is not read)

    @extend_schema(
        operation_id="test_webhook",
        summary="Send a signed test event to the webhook",
        description=(
            "Queues one TEST event to this webhook, signed and sent like every event (same headers, no "
            "X-Violet-Order-Id or X-Violet-Bag-Id: it is about no order). It is attempted once, is not "
            "numbered among any bag's events (it neither waits for nor delays them) and does not count "
            "toward pausing the webhook. Its outcome (status code and timing, never the reply body) shows in "
            "GET /events?type=TEST. The webhook must be ACTIVE. At most WEBHOOK_TEST_RATE_LIMIT per app."
        ),
        parameters=[_WEBHOOK_ID],
        request=None,
        responses={
            202: api.WebhookEventSerializer,
            **_AUTH_ERRORS,
            **_NOT_FOUND,
            409: OpenApiResponse(
                ErrorSerializer, description="The webhook is PAUSED or DISABLED (webhook_not_active)."
            ),
        },
        tags=["webhooks"],
    )
    def post(self, request, webhook_id: int):
        event = services.webhook_test_event_send(endpoint=self.endpoint(webhook_id), actor=_actor(self))
        sent = selectors.event_get_for_app(self.app, event.event_id)
        return Response(api.WebhookEventSerializer(sent).data, status=http_status.HTTP_202_ACCEPTED)


class EventsView(ChannelAPIView):
    @extend_schema(
        operation_id="list_events",
        summary="List the app's events, newest first",
        parameters=[
            OpenApiParameter("type", str, enum=EventType.values, description="Only events of this type."),
            OpenApiParameter("order_id", _ID, description="Only events of this order."),
            OpenApiParameter("bag_id", _ID, description="Only events of this bag."),
            OpenApiParameter(
                "page",
                {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1},
                description="Page number, from 1 (default 1).",
            ),
            OpenApiParameter(
                "size",
                {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                description="Events per page, 1 to 100 (default 20).",
            ),
        ],
        responses={200: api.WebhookEventPageSerializer, **_INVALID, **_AUTH_ERRORS},
        tags=["webhooks"],
    )
    def get(self, request):
        query = api.EventListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        events = selectors.event_list_for_app(
            self.app,
            event_type=params.get("type"),
            order_id=params.get("order_id"),
            bag_id=params.get("bag_id"),
        )
        page, size = params["page"], params["size"]
        total = events.count()
        content = list(events[(page - 1) * size : page * size])
        total_pages = math.ceil(total / size) if total else 0
        return Response(
            {
                "content": api.WebhookEventSerializer(content, many=True).data,
                "number": page,
                "size": size,
                "total_elements": total,
                "total_pages": total_pages,
                "first": page == 1,
                "last": page >= total_pages,
                "empty": not content,
            }
        )


class EventResendView(ChannelAPIView):
    @extend_schema(
        operation_id="resend_event",
        summary="Send an event again",
        description=(
            "To every webhook receiving its type, or only to webhook_id. Where the event's delivery still waits "
            "for a retry, it is retried now (same event). Otherwise a new event is created with the original's "
            "body: a new X-Violet-Event-Id, and X-Violet-Event-Id-Source naming the original. The answer is that "
            "new event (or the original, if every webhook was still waiting for it)."
        ),
        parameters=[_EVENT_ID],
        request=api.EventResendRequestSerializer,
        responses={202: api.WebhookEventSerializer, **_BODY, **_AUTH_ERRORS, **_NOT_FOUND, **_CONFLICT},
        tags=["webhooks"],
    )
    def post(self, request, event_id: str):
        try:
            event = selectors.event_get_for_app(self.app, uuid.UUID(event_id))
        except (ValueError, WebhookEvent.DoesNotExist):
            raise NotFound("Event not found.") from None
        serializer = api.EventResendRequestSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        endpoint = None
        if "webhook_id" in serializer.validated_data:
            try:
                endpoint = selectors.endpoint_get_for_app(self.app, serializer.validated_data["webhook_id"])
            except WebhookEndpoint.DoesNotExist:
                raise NotFound("Webhook not found.") from None
        result = services.event_resend(event=event, endpoint=endpoint, actor=_actor(self))
        resent = selectors.event_get_for_app(self.app, result.event.event_id)
        return Response(api.WebhookEventSerializer(resent).data, status=http_status.HTTP_202_ACCEPTED)

"""The channel API's webhook objects: webhooks, events and their deliveries, and the requests.

The bodies sent to channels are rendered by the refund domain (refunds.representation: the full
Order, or the Order Refund object exactly as the refunds API shows it); an event stores and shows
the body it was given. Serializers only translate.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import (
    ORDER_EVENT_TYPES,
    SUBSCRIBABLE_EVENT_TYPES,
    DeliveryStatus,
    EventType,
    WebhookEndpoint,
)
from refunds.api.serializers import (
    ApiDateTimeField,
    RefundSerializer,
    RejectUnknownFieldsMixin,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
)
from refunds.representation import OrderPayloadSerializer

# --- channel API: webhooks -----------------------------------------------------------------------

_EVENT_TYPE_HELP = "Event types to receive; omitted or empty: every type (TEST is sent only when asked for)."
# TEST is not subscribed to: it goes to the one webhook it was asked for.
_SUBSCRIBABLE_CHOICES = [(value, value) for value in SUBSCRIBABLE_EVENT_TYPES]
# A channel may resume (or re-enable) and disable its webhook; only delivery failures pause one.
SETTABLE_WEBHOOK_STATUSES = (WebhookEndpoint.Status.ACTIVE, WebhookEndpoint.Status.DISABLED)


# What registration accepts outside DEBUG (services.endpoints.webhook_url_validate: Django's
# URLValidator, https only, no credentials), as a pattern the schema states: an https URL to a host
# name with a top-level domain, an optional port and path. The server stays the judge (it also refuses
# names that resolve to private addresses, and with DEBUG takes http and local hosts).
WEBHOOK_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63}"
    r"(:[1-9][0-9]{0,4})?([/?#][^\s\x00]*)?$"
)


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 500,
        "pattern": WEBHOOK_URL_PATTERN,
        "example": "https://example.com/hooks/violet",
    }
)
class WebhookUrlField(StrictCharField):
    pass


class _EventTypesMixin:
    """`events` (a list) or Violet's `event` (one type): the same subscription, never both."""

    def validate(self, attrs):
        if "event" in attrs and "events" in attrs:
            raise serializers.ValidationError({"event": ["Send either event or events, not both."]})
        if "event" in attrs:
            single = attrs.pop("event")
            attrs["events"] = [single] if single else []
        if attrs.get("events") is not None:
            attrs["events"] = list(dict.fromkeys(attrs["events"]))  # drop repeats, keep order
        return attrs


class WebhookCreateRequestSerializer(_EventTypesMixin, RejectUnknownFieldsMixin, serializers.Serializer):
    """A new endpoint. HTTPS only, unless the server runs with DEBUG."""

    at_most_one_of = (("event", "events"),)  # the schema says what _EventTypesMixin refuses

    remote_endpoint = WebhookUrlField(max_length=500, help_text="The URL events are POSTed to (https).")
    events = serializers.ListField(
        child=StrictChoiceField(choices=_SUBSCRIBABLE_CHOICES),
        required=False,
        allow_empty=True,
        max_length=len(SUBSCRIBABLE_EVENT_TYPES),
        help_text=_EVENT_TYPE_HELP,
    )
    event = StrictChoiceField(
        choices=_SUBSCRIBABLE_CHOICES, required=False, help_text="One event type (Violet's form)."
    )


class WebhookUpdateRequestSerializer(_EventTypesMixin, RejectUnknownFieldsMixin, serializers.Serializer):
    """Change the URL or the subscription; `status` ACTIVE resumes (or re-enables), DISABLED stops."""

    at_most_one_of = (("event", "events"),)

    remote_endpoint = WebhookUrlField(max_length=500, required=False)
    events = serializers.ListField(
        child=StrictChoiceField(choices=_SUBSCRIBABLE_CHOICES),
        required=False,
        allow_empty=True,
        max_length=len(SUBSCRIBABLE_EVENT_TYPES),
        help_text=_EVENT_TYPE_HELP,
    )
    event = StrictChoiceField(choices=_SUBSCRIBABLE_CHOICES, required=False)
    status = StrictChoiceField(choices=[(s, s) for s in SETTABLE_WEBHOOK_STATUSES], required=False)


class WebhookSerializer(serializers.Serializer):
    """The webhook object (spec section 5). Counts and failure rate cover the last 7 days."""

    id = serializers.IntegerField()
    app_id = serializers.IntegerField()
    remote_endpoint = serializers.CharField(source="url")
    events = serializers.ListField(
        source="event_types", child=serializers.CharField(), help_text="Empty: every event type."
    )
    status = serializers.ChoiceField(choices=WebhookEndpoint.Status.choices)
    paused_until = ApiDateTimeField(allow_null=True)
    temp_disable_ms = serializers.SerializerMethodField(help_text="Milliseconds until a paused webhook resumes.")
    events_count = serializers.SerializerMethodField(help_text="Deliveries in the last 7 days.")
    failure_rate = serializers.SerializerMethodField(help_text="Failed attempts / attempts, last 7 days (0 to 1).")
    date_created = ApiDateTimeField()
    date_last_modified = ApiDateTimeField()

    def _stats(self, endpoint):
        return self.context.get("stats", {}).get(endpoint.pk)

    def get_temp_disable_ms(self, endpoint) -> int:
        now = self.context.get("now")
        if endpoint.status != WebhookEndpoint.Status.PAUSED or not endpoint.paused_until or now is None:
            return 0
        return max(0, int((endpoint.paused_until - now).total_seconds() * 1000))

    def get_events_count(self, endpoint) -> int:
        stats = self._stats(endpoint)
        return stats.deliveries if stats else 0

    def get_failure_rate(self, endpoint) -> float:
        stats = self._stats(endpoint)
        return stats.failure_rate if stats else 0.0


class WebhookCreatedSerializer(WebhookSerializer):
    signing_secret = serializers.CharField(
        help_text="Shown once: verify X-Violet-Hmac with it (Base64 HMAC-SHA256 of the raw body)."
    )


# --- channel API: events -------------------------------------------------------------------------


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    webhook_id = serializers.IntegerField(source="endpoint_id")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = ApiDateTimeField(allow_null=True)
    last_attempt_at = ApiDateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True, help_text="HTTP status of the last attempt's answer.")
    last_duration_ms = serializers.IntegerField(allow_null=True, help_text="How long the last attempt took.")
    last_error = serializers.SerializerMethodField(
        help_text="Why the last attempt failed: `HTTP <status>`, a timeout or a connection failure. "
        "Never the reply's body."
    )
    date_finished = ApiDateTimeField(allow_null=True)

    def get_last_error(self, delivery) -> str:
        # The status code and why nothing answered, never the reply body: the reply may come from a
        # service the channel could not otherwise read. Operators see an excerpt in the admin.
        if delivery.last_status_code is not None and delivery.last_error.startswith("HTTP "):
            return f"HTTP {delivery.last_status_code}"
        return delivery.last_error


class WebhookEventSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="event_id", help_text="X-Violet-Event-Id of its deliveries.")
    type = serializers.ChoiceField(source="event_type", choices=EventType.choices)
    app_id = serializers.IntegerField()
    order_id = serializers.IntegerField(allow_null=True, help_text="Null for a TEST event.")
    bag_id = serializers.IntegerField(allow_null=True, help_text="Null for a TEST event.")
    refund_id = serializers.IntegerField(allow_null=True)
    sequence = serializers.IntegerField(
        allow_null=True, help_text="Position among the bag's events (null for a TEST event: it has no bag)."
    )
    event_id_source = serializers.UUIDField(
        source="resent_from.event_id", allow_null=True, default=None, help_text="For a resend: the original event."
    )
    date_created = ApiDateTimeField()
    deliveries = WebhookDeliverySerializer(many=True)
    payload = serializers.SerializerMethodField(help_text="The body sent: the Order, the Refund, or a test body.")

    @extend_schema_field({"type": "object"})
    def get_payload(self, event) -> dict:
        import json

        return json.loads(event.body)


class WebhookEventPageSerializer(serializers.Serializer):
    """A page of events, newest first (page numbers start at 1)."""

    content = WebhookEventSerializer(many=True)
    number = serializers.IntegerField()
    size = serializers.IntegerField()
    total_elements = serializers.IntegerField()
    total_pages = serializers.IntegerField()
    first = serializers.BooleanField()
    last = serializers.BooleanField()
    empty = serializers.BooleanField()


class EventListQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """The query of GET /events: an unknown parameter is an error (400), like an unknown body field."""

    type = serializers.ChoiceField(choices=EventType.choices, required=False)
    order_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    bag_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, default=1)
    size = serializers.IntegerField(min_value=1, max_value=100, required=False, default=20)


class EventResendRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """Optional: resend to one webhook only (default: every webhook subscribed to the event type)."""

    webhook_id = StrictIntegerField(min_value=1, required=False)


# --- the bodies sent to webhooks: one schema per event type (OpenAPI callbacks of create_webhook) ----


class TestWebhookBodySerializer(serializers.Serializer):
    """The body of a TEST event, sent to the one webhook it was asked for
    (POST /v1/events/webhooks/{webhook_id}/test). About no order: only proves the URL answers and the
    signature verifies."""

    type = serializers.ChoiceField(choices=[(EventType.TEST, EventType.TEST)], help_text="Always TEST.")
    test = serializers.BooleanField(help_text="Always true: nothing happened to any order.")
    event_id = serializers.UUIDField(help_text="The same as the X-Violet-Event-Id header.")
    app_id = serializers.IntegerField()
    webhook_id = serializers.IntegerField()
    message = serializers.CharField()
    date_created = ApiDateTimeField()


def _payload_serializer(event_type: str) -> type[serializers.Serializer]:
    """A serializer named for the event type (so the schema has one component per type), shaped as
    the body that type carries: the Order Refund object, or the full Order."""
    base = OrderPayloadSerializer if event_type in ORDER_EVENT_TYPES else RefundSerializer
    camel = "".join(word.capitalize() for word in event_type.split("_"))
    what = "the full Order, its bags and SKUs" if base is OrderPayloadSerializer else "the Order Refund object"
    return type(
        f"{camel}WebhookBodySerializer",
        (base,),
        {"__doc__": f"The body of a {event_type} event: {what}.", "__module__": __name__},
    )


WEBHOOK_BODY_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    **{event_type: _payload_serializer(event_type) for event_type in SUBSCRIBABLE_EVENT_TYPES},
    EventType.TEST: TestWebhookBodySerializer,
}

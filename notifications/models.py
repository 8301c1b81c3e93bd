"""Outbound webhooks to channels (docs/violet-api.md, Outbound webhooks): where an app wants events sent, the
events themselves (a transactional outbox), and one delivery per event and endpoint.

- `WebhookEndpoint`: a channel's URL, the event types it subscribed to (empty = all), its delivery
  state (ACTIVE, PAUSED after too many failures, DISABLED after too many pauses) and its own signing
  secret. The spec signs with "the app secret", but App keeps only a hash of that secret, which
  cannot key an HMAC; so each endpoint gets a random secret at registration, shown to the channel
  once and stored encrypted. A channel verifies a delivery with that secret and nothing else.
- `WebhookEvent`: written in the same transaction as the change that causes it, keyed by
  `dedupe_key` so one change is one event id however often the change is replayed; numbered per bag
  (`sequence`) so deliveries to an endpoint keep the bag's order.
- `WebhookDelivery`: the event record of the spec (status CREATED, IN_PROGRESS, SUCCEEDED, FAILED,
  CANCELLED), with the attempt bookkeeping the relay and the delivery task share.
"""

import uuid

from django.db import models
from django.db.models import Q

from violet_refunds.crypto import EncryptedTextField
from violet_refunds.db import TimeStampedModel


class EventType(models.TextChoices):
    """Order events use Violet's names (ORDER_CANCELLED with two Ls, as Violet's guides spell it).
    Refund events are `REFUND_` + the refund's status, verbatim (so REFUND_CANCELED has one L, like
    the refund status CANCELED)."""

    ORDER_UPDATED = "ORDER_UPDATED", "Order updated (sent alongside every order event)"
    ORDER_REFUNDED = "ORDER_REFUNDED", "Bag refunded or partially refunded"
    ORDER_CANCELLED = "ORDER_CANCELLED", "Bag cancelled"
    REFUND_PROCESSING = "REFUND_PROCESSING", "Refund recorded (or retried): processing"
    REFUND_COMPLETED = "REFUND_COMPLETED", "Refund completed"
    REFUND_PARTIALLY_COMPLETED = "REFUND_PARTIALLY_COMPLETED", "Refund partially completed"
    REFUND_FAILED = "REFUND_FAILED", "Refund failed"
    REFUND_EXTERNAL = "REFUND_EXTERNAL", "Refund settled outside the network"
    REFUND_CANCELED = "REFUND_CANCELED", "Refund canceled before money moved"
    # Asked for by the channel (POST /v1/events/webhooks/{id}/test), to one endpoint: about no order
    # or bag, so it has no bag sequence and never holds back (nor waits behind) a bag's events.
    TEST = "TEST", "Test event asked for by the channel"


ORDER_EVENT_TYPES = frozenset({EventType.ORDER_UPDATED, EventType.ORDER_REFUNDED, EventType.ORDER_CANCELLED})
# What an endpoint subscribes to: every type but TEST, which goes to the one endpoint that asked for it.
SUBSCRIBABLE_EVENT_TYPES = tuple(t for t in EventType.values if t != EventType.TEST)


class WebhookEndpoint(TimeStampedModel):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        PAUSED = "PAUSED"
        DISABLED = "DISABLED"

    app = models.ForeignKey("refunds.App", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500, help_text="Where events are POSTed (HTTPS outside DEBUG).")
    event_types = models.JSONField(default=list, blank=True, help_text="Subscribed event types; empty = all.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    # Random per endpoint (see the module docstring); Fernet-encrypted at rest.
    signing_secret = EncryptedTextField()
    paused_until = models.DateTimeField(null=True, blank=True)
    pause_rounds = models.PositiveSmallIntegerField(
        default=0, help_text="Pauses since the last successful delivery; one more than allowed disables."
    )
    # Failed attempts in the current failure window (a fixed window that opens at its first failure).
    failure_window_started_at = models.DateTimeField(null=True, blank=True)
    failures_in_window = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["app", "url"], name="webhook_endpoint_unique_url_per_app")]

    def __str__(self):
        return f"Webhook {self.pk} → {self.url}"

    def subscribes_to(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookEvent(models.Model):
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    app = models.ForeignKey("refunds.App", on_delete=models.CASCADE, related_name="webhook_events")
    event_type = models.CharField(max_length=32, choices=EventType.choices, db_index=True)
    # Null only for a TEST event (webhook_event_bag_unless_test).
    order = models.ForeignKey(
        "refunds.Order", on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_events"
    )
    bag = models.ForeignKey(
        "refunds.Bag", on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_events"
    )
    refund = models.ForeignKey(
        "refunds.Refund", on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_events"
    )
    # Position among the bag's events: deliveries to one endpoint go out in this order.
    sequence = models.PositiveIntegerField(null=True, blank=True)
    # One change, one event: "refund:<id>:<status>:<retry round>", "bag:<id>:<type>:...". Null for
    # a resend, which is a deliberate second copy of an earlier event (resent_from).
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)
    resent_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resends")
    # The exact JSON text sent: every attempt and every resend signs and sends the same bytes.
    body = models.TextField()
    date_created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"], condition=Q(dedupe_key__isnull=False), name="webhook_event_unique_dedupe_key"
            ),
            models.UniqueConstraint(fields=["bag", "sequence"], name="webhook_event_unique_sequence_per_bag"),
            # Every event but a TEST one is about a bag and numbered among its events; a TEST one never is.
            models.CheckConstraint(
                condition=(
                    Q(event_type="TEST", order__isnull=True, bag__isnull=True, sequence__isnull=True)
                    | (~Q(event_type="TEST") & Q(order__isnull=False, bag__isnull=False, sequence__isnull=False))
                ),
                name="webhook_event_bag_unless_test",
            ),
        ]
        indexes = [models.Index(fields=["app", "date_created"], name="webhook_event_app_date")]

    def __str__(self):
        return f"{self.event_type} {self.event_id}"


class DeliveryStatus(models.TextChoices):
    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# A delivery in one of these holds back the later events of its bag for its endpoint.
UNFINISHED_DELIVERY_STATUSES = (DeliveryStatus.CREATED, DeliveryStatus.IN_PROGRESS)


class WebhookDelivery(TimeStampedModel):
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.CREATED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the relay last handed it to the broker (it is not handed over again for a while).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # When the current attempt began; also the claim token (a late result of an older claim is dropped).
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # What the channel sees of the last attempt: the status code or why nothing answered, never the body.
    last_error = models.TextField(blank=True)
    # The start of the last failing reply's body, for operators only (admin): the reply may come from
    # a service the channel could not otherwise read.
    last_reply_excerpt = models.TextField(blank=True, verbose_name="last reply (excerpt)")
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    date_finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_unique_event_endpoint")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["endpoint", "status"], name="webhook_delivery_endpoint"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self):
        return f"Delivery {self.pk} ({self.status})"

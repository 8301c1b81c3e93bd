"""Stripe's own webhooks (the dj-stripe way): the endpoints Stripe posts to and every event it sent.

An event is stored raw once per Stripe event id, before anything trusts its content, and processed
by a task (stripe_events.services): the event is a trigger, what Stripe holds (read through
payments.gateway) is the truth.
"""

import uuid

from django.db import models

from violet_refunds.crypto import EncryptedJSONField
from violet_refunds.db import TimeStampedModel

# Stripe's own default (stripe.Webhook.DEFAULT_TOLERANCE): a signed timestamp older than this is refused.
DEFAULT_TOLERANCE_SECONDS = 300


class StripeWebhookEndpoint(TimeStampedModel):
    """One URL registered in the Stripe Dashboard (Developers -> Webhooks): /webhooks/stripe/<public_id>/.

    `signing_secrets` holds every `whsec_…` currently valid for it: Stripe signs with one secret per
    endpoint, and while a secret is rolled (the Dashboard keeps the old one valid for up to 24 h) both
    are listed here; a delivery verifies with any of them."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    signing_secrets = EncryptedJSONField(
        null=True, blank=True, help_text="The endpoint's signing secrets (whsec_…), encrypted at rest."
    )
    tolerance_seconds = models.PositiveIntegerField(
        default=DEFAULT_TOLERANCE_SECONDS,
        help_text="How old a signed timestamp may be (seconds); Stripe's libraries default to 300.",
    )
    enabled = models.BooleanField(default=True)
    # The endpoint the built-in Stripe sandbox signs its events for (STRIPE_SANDBOX_WEBHOOK_SECRET).
    is_sandbox = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_sandbox"], condition=models.Q(is_sandbox=True), name="stripe_endpoint_one_sandbox"
            )
        ]

    def __str__(self):
        return self.name

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.signing_secrets or []) if isinstance(s, str) and s.strip()]


class StripeEvent(TimeStampedModel):
    """A Stripe Event object as delivered, and what processing made of it.

    RECEIVED -> PROCESSED | IGNORED | RETRYING | FAILED, as platforms.InboundEvent and through the
    same code (violet_refunds.retrying): RETRYING after a transient error (database, broker, Stripe
    unreachable), retried at `next_attempt_at` until INBOUND_EVENT_RETRY_HORIZON_SECONDS after
    `retrying_since`, then FAILED; FAILED too once INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME runs in a
    row died without recording an outcome (a poison event). IGNORED: a type we do not act on, or an
    event about nothing of ours; stored and acknowledged all the same."""

    class Status(models.TextChoices):
        RECEIVED = "RECEIVED", "Received"
        PROCESSED = "PROCESSED", "Processed"
        IGNORED = "IGNORED", "Ignored"
        RETRYING = "RETRYING", "Retrying (transient error)"
        FAILED = "FAILED", "Failed (needs an operator)"

    endpoint = models.ForeignKey(
        StripeWebhookEndpoint, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    stripe_id = models.CharField("Stripe event id", max_length=255, unique=True, help_text="evt_…")
    type = models.CharField(max_length=100, db_index=True, help_text="e.g. refund.updated")
    api_version = models.CharField(max_length=64, blank=True)
    livemode = models.BooleanField(default=False)
    stripe_created = models.DateTimeField(null=True, blank=True, help_text="When Stripe created the event.")
    object_id = models.CharField(
        max_length=255, blank=True, db_index=True, help_text="The id of data.object (re_…, ch_…, dp_…, tr_…)."
    )
    body = models.TextField(help_text="Raw body exactly as received.")
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    outcome = models.TextField(blank=True, help_text="What processing decided, in words.")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Processing runs started since the last recorded outcome: set before a run, cleared by any
    # outcome. A run that kills its worker leaves it counting; past INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME
    # the event is FAILED instead of taking workers down forever.
    claims_without_outcome = models.PositiveIntegerField(
        default=0, help_text="Processing runs started since the last recorded outcome (a run that died leaves it)."
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    retrying_since = models.DateTimeField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0)
    requeued_at = models.DateTimeField(null=True, blank=True)
    refunds = models.ManyToManyField(
        "refunds.Refund", blank=True, related_name="stripe_events", help_text="The refunds this event touched."
    )

    class Meta:
        ordering = ["-date_created"]
        indexes = [
            models.Index(fields=["status", "date_created"], name="stripe_event_status_date"),
            models.Index(fields=["status", "next_attempt_at"], name="stripe_event_status_next"),
        ]

    def __str__(self):
        return f"{self.type} {self.stripe_id}"

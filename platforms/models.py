"""Merchants, their store connections (credentials encrypted at rest) and raw inbound events."""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from violet_refunds.crypto import EncryptedJSONField, EncryptedTextField
from violet_refunds.db import CurrencyField, TimeStampedModel


class Platform(models.TextChoices):
    SHOPIFY = "SHOPIFY", "Shopify"
    ECWID = "ECWID", "Ecwid"
    WIX = "WIX", "Wix"
    SFCC = "SFCC", "Salesforce Commerce Cloud"
    BIGCOMMERCE = "BIGCOMMERCE", "BigCommerce"
    WOOCOMMERCE = "WOOCOMMERCE", "WooCommerce"


class SfccRefundMode(models.TextChoices):
    # Seed 000, "Sales Force Commerce Cloud": Option 1 and Option 2.
    CANCEL_AS_REFUND = "CANCEL_AS_REFUND", "Option 1: cancelled orders are refunds"
    MANUAL_NOTICE = "MANUAL_NOTICE", "Option 2: merchant notifies refunds"
    # Issue #25: the merchant's order management system is read for refunds (platforms/oms/).
    ORDER_MANAGEMENT = "ORDER_MANAGEMENT", "Order management system: refunds found automatically"


class Merchant(TimeStampedModel):
    name = models.CharField(max_length=200)
    platform = models.CharField(max_length=16, choices=Platform.choices, db_index=True)
    store_url = models.URLField(max_length=500, blank=True)
    currency = CurrencyField(default="USD")
    stripe_account_id = models.CharField("Stripe connected account", max_length=255, blank=True, help_text="acct_…")
    sfcc_refund_mode = models.CharField(
        "SFCC refund mode",
        max_length=20,
        choices=SfccRefundMode.choices,
        blank=True,
        help_text="Only for Salesforce Commerce Cloud merchants.",
    )
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="MerchantMembership",
        related_name="merchants",
        blank=True,
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(platform="SFCC") | Q(sfcc_refund_mode=""),
                name="merchant_sfcc_mode_only_for_sfcc",
            ),
            models.CheckConstraint(
                condition=~Q(platform="SFCC") | ~Q(sfcc_refund_mode=""),
                name="merchant_sfcc_requires_mode",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.get_platform_display()})"


class MerchantMembership(TimeStampedModel):
    """A portal user acting for a merchant."""

    class Role(models.TextChoices):
        OWNER = "OWNER", "Owner"
        STAFF = "STAFF", "Staff"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.OWNER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "user"], name="membership_unique_user")]

    def __str__(self):
        return f"{self.user} @ {self.merchant}"


class MerchantApiKey(TimeStampedModel):
    """A key a merchant's engineers use for the refund-notice API (SFCC Option 2). Only a hash is
    stored; the key itself is shown once, when created."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public first characters, to identify a key.")
    key_hash = models.CharField(max_length=128)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


def new_webhook_secret() -> str:
    """A fresh random webhook secret (new connections, reconnects after a disconnect)."""
    return secrets.token_urlsafe(32)


def _webhook_secret():  # the field's default, named so in migration 0001
    return new_webhook_secret()


# Platforms whose app-level webhooks name the store in the body, and the credential holding that
# name: Ecwid `storeId` (the store id the API client uses), Wix `instanceId` (the app instance on
# the site, given at connect time). StoreConnection.external_store_id copies it, unencrypted and
# indexed, so /webhooks/<platform>/ can route a delivery without decrypting every connection.
ROUTING_CREDENTIALS: dict[str, str] = {Platform.ECWID: "store_id", Platform.WIX: "instance_id"}
# Shopify's compliance webhooks (and app/uninstalled) are configured once per app and name the shop
# in X-Shopify-Shop-Domain: /webhooks/shopify/ routes by the credential `shop_domain` (issue #22).
ROUTING_CREDENTIALS[Platform.SHOPIFY] = "shop_domain"


def external_store_id_from(platform: str, credentials) -> str:
    """The store's own id for app-level routing ("" when the platform routes by URL or none is set)."""
    name = ROUTING_CREDENTIALS.get(platform)
    if not name or not isinstance(credentials, dict):
        return ""
    return str(credentials.get(name) or "").strip().lower()[:255]


class StoreConnection(TimeStampedModel):
    """How we reach a merchant's store, and how its webhooks reach us."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        CONNECTED = "CONNECTED", "Connected"
        INVALID = "INVALID", "Invalid credentials"
        DISCONNECTED = "DISCONNECTED", "Disconnected"

    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="connection")
    # Unguessable id in the webhook URL /webhooks/<platform>/<public_id>/.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Platform credentials (Wix: api_key, account_id, site_id; Shopify: access token; ...).
    credentials = EncryptedJSONField(null=True, blank=True)
    # Secret used to verify inbound webhooks (Shopify app secret, Ecwid client secret, Wix public key...).
    webhook_secret = EncryptedTextField(blank=True, default=_webhook_secret)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    # Polling cursor (SFCC Option 1): orders modified after this instant are read on the next poll.
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Disconnect (platforms.disconnect): when and why the credentials and webhook secret were wiped.
    disconnected_at = models.DateTimeField(null=True, blank=True)
    disconnect_reason = models.CharField(max_length=255, blank=True)
    # The platform's own id of the store (Ecwid store id, Wix app instance id), copied from the
    # credentials on save: how app-level webhooks (/webhooks/ecwid/, /webhooks/wix/) find the connection.
    external_store_id = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_index=True,
        editable=False,
        help_text="Ecwid store id / Wix app instance id, from the credentials: routes app-level webhooks.",
    )
    # When the last webhook delivery for this store arrived (set at ingest, at most about once a
    # minute): a store that stops sending looks like a quiet one otherwise (issue #24).
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="When its last webhook arrived.")
    # When platforms.subscriptions last compared the store's webhook subscriptions with what we need.
    subscriptions_synced_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Connection of {self.merchant}"

    def save(self, *args, **kwargs):
        # Keep the routing id in step with the credentials whenever they are written (loaded, not deferred).
        update_fields = kwargs.get("update_fields")
        writes_credentials = update_fields is None or "credentials" in update_fields
        if writes_credentials and "credentials" not in self.get_deferred_fields():
            self.external_store_id = external_store_id_from(self.merchant.platform, self.credentials)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "external_store_id"}
        super().save(*args, **kwargs)


class WebhookSubscription(TimeStampedModel):
    """One webhook subscription the product needs at a store's platform (issue #24): what the adapter
    declares (topic, address), what the platform holds (its id), and how the last check went.
    Written only by platforms.subscriptions.services.subscriptions_sync."""

    class State(models.TextChoices):
        ACTIVE = "ACTIVE", "Active (verified at the platform)"
        ERROR = "ERROR", "Error (see last error)"
        APP_LEVEL = "APP_LEVEL", "App-level (set once in the app's configuration; not verifiable per store)"

    connection = models.ForeignKey(StoreConnection, on_delete=models.CASCADE, related_name="subscriptions")
    topic = models.CharField(max_length=255)
    platform_id = models.CharField(max_length=255, blank=True, help_text="The platform's id of the subscription.")
    address = models.URLField(max_length=500, blank=True, help_text="Where the platform delivers.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.ERROR)
    # sha256 of the secret last registered with the subscription (never the secret itself): a
    # rotated secret is re-registered even though platforms do not show a secret back.
    secret_fingerprint = models.CharField(max_length=64, blank=True)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["connection", "topic"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "topic"], name="webhook_subscription_unique_topic")
        ]
        indexes = [models.Index(fields=["state"], name="webhook_subscription_state")]

    def __str__(self):
        return f"{self.topic} of {self.connection}"


class InboundEvent(TimeStampedModel):
    """A raw platform webhook (or poll result), stored before anything trusts it (dj-stripe style).

    RECEIVED -> PROCESSED | IGNORED | AWAITING_ORDER | RETRYING | FAILED. RETRYING: processing hit a
    transient error (database, broker, platform timeout/5xx/429); it is retried automatically at
    `next_attempt_at` until INBOUND_EVENT_RETRY_HORIZON_SECONDS after `retrying_since`, then FAILED.
    AWAITING_ORDER: the event names an order (`order_id`) that is not (yet) a bag of the merchant; it
    is processed again as soon as such a bag appears (on the bag's creation, and by beat's sweep), and
    ends IGNORED (or FAILED: INBOUND_EVENT_AWAITING_ORDER_EXPIRED_STATUS)
    INBOUND_EVENT_AWAITING_ORDER_EXPIRY_SECONDS after `awaiting_since` if none does.
    IGNORED stays for events that imply no refund at all. FAILED needs an operator (a permanent
    error, the retry horizon passed, or no order appeared): fix the cause, then replay.
    """

    class Status(models.TextChoices):
        RECEIVED = "RECEIVED", "Received"
        PROCESSED = "PROCESSED", "Processed"
        IGNORED = "IGNORED", "Ignored"
        AWAITING_ORDER = "AWAITING_ORDER", "Awaiting its order (not yet a bag)"
        RETRYING = "RETRYING", "Retrying (transient error)"
        FAILED = "FAILED", "Failed (needs an operator)"

    platform = models.CharField(max_length=16, choices=Platform.choices)
    connection = models.ForeignKey(
        StoreConnection, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    event_id = models.CharField(max_length=255, help_text="The platform's own event/delivery id.")
    topic = models.CharField(max_length=255, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(
        blank=True,
        help_text="The body as received, less capability fields (order status URL keys, order keys, tokens); "
        "empty once redacted (platforms.privacy: events with no refund signal, retention, erasure).",
    )
    body_sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the body as received: what is left of it once redacted."
    )
    redacted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the body and headers were redacted (not kept any more)."
    )
    remote_ip = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    outcome = models.TextField(blank=True, help_text="What processing decided, in words.")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Processing runs started since the last recorded outcome: set before a run, cleared by any
    # outcome. A run that kills its worker (out of memory, a hard kill) leaves it counting; past
    # INBOUND_EVENT_MAX_CLAIMS_WITHOUT_OUTCOME the event is FAILED instead of taking workers down forever.
    claims_without_outcome = models.PositiveIntegerField(
        default=0, help_text="Processing runs started since the last recorded outcome (a run that died leaves it)."
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    # Automatic retries after transient errors (RETRYING only; cleared by any other outcome).
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the next automatic attempt is due.")
    retrying_since = models.DateTimeField(
        null=True, blank=True, help_text="First transient failure in a row (the retry horizon starts here)."
    )
    retries = models.PositiveIntegerField(default=0, help_text="Transient failures in the current streak.")
    # AWAITING_ORDER: the platform order the event names, matched to bags by (merchant, external_id).
    order_id = models.CharField(
        max_length=255, blank=True, help_text="The platform order id the event names, when it awaits its order."
    )
    awaiting_since = models.DateTimeField(
        null=True, blank=True, help_text="When the event first found no bag for its order (expiry starts here)."
    )
    # When beat last re-enqueued the event (it re-enqueues one event at most once per requeue age).
    requeued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]
        permissions = [("view_raw_payload", "Can see raw inbound payloads and headers")]
        constraints = [models.UniqueConstraint(fields=["platform", "event_id"], name="inbound_event_unique_id")]
        indexes = [
            models.Index(fields=["status", "date_created"], name="inbound_status_date"),
            models.Index(fields=["status", "next_attempt_at"], name="inbound_status_next_attempt"),
            models.Index(fields=["status", "order_id"], name="inbound_status_order"),
        ]

    def __str__(self):
        return f"{self.platform} {self.topic} {self.event_id}"


class OmsSystem(models.TextChoices):
    """The order management systems we read refunds from (one module each in platforms/oms/)."""

    SALESFORCE_OM = "SALESFORCE_OM", "Salesforce Order Management"


class OmsConnection(TimeStampedModel):
    """An SFCC merchant's order management system (SfccRefundMode.ORDER_MANAGEMENT): how we reach
    the org (credentials encrypted at rest) and how far its refund discovery has read.

    `cursor`: records changed after this instant (less a small overlap) are read on the next run.
    `backoff_until`: the org's API limits were reached; discovery leaves it alone until then."""

    class Status(models.TextChoices):
        CONNECTED = "CONNECTED", "Connected"
        DISCONNECTED = "DISCONNECTED", "Disconnected"

    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="oms_connection")
    system = models.CharField(max_length=20, choices=OmsSystem.choices, default=OmsSystem.SALESFORCE_OM)
    base_url = models.URLField(
        "My Domain URL", max_length=500, help_text="The org's My Domain URL, e.g. https://acme.my.salesforce.com."
    )
    # Salesforce: client_id and client_secret of the connected app (OAuth 2.0 client credentials).
    credentials = EncryptedJSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTED)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    cursor = models.DateTimeField(null=True, blank=True, help_text="Refunds changed after this were not read yet.")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True, help_text="Last run that read up to its end.")
    last_error = models.TextField(blank=True)
    backoff_until = models.DateTimeField(null=True, blank=True, help_text="API limits reached: no run before.")
    api_usage = models.CharField(max_length=100, blank=True, help_text="The org's last reported API usage.")

    class Meta:
        verbose_name = "OMS connection"

    def __str__(self):
        return f"{self.get_system_display()} of {self.merchant.name}"


class PrivacyRequest(TimeStampedModel):
    """A data-subject or shop request a platform sent us (Shopify's mandatory compliance webhooks),
    or one an operator recorded (an erasure). Kept as the proof it was done: what was asked (the
    shopper reduced to ids, the orders named), the state, the due date (Shopify: 30 days), and what
    was done. The request's own payload is not stored (it names the shopper)."""

    class Kind(models.TextChoices):
        CUSTOMER_DATA_REQUEST = "CUSTOMER_DATA_REQUEST", "Customer data request"
        CUSTOMER_REDACT = "CUSTOMER_REDACT", "Customer redaction"
        SHOP_REDACT = "SHOP_REDACT", "Shop redaction"
        ERASURE = "ERASURE", "Erasure (operator)"

    class State(models.TextChoices):
        RECEIVED = "RECEIVED", "Received"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed (needs an operator)"

    kind = models.CharField(max_length=24, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RECEIVED, db_index=True)
    platform = models.CharField(max_length=16, choices=Platform.choices, blank=True)
    merchant = models.ForeignKey(
        Merchant, on_delete=models.SET_NULL, null=True, blank=True, related_name="privacy_requests"
    )
    # The platform's delivery id (idempotency: a redelivery records nothing new); "" for operator requests.
    delivery_id = models.CharField(max_length=255, blank=True)
    shop_domain = models.CharField(max_length=255, blank=True)
    # The platform's customer id (no e-mail, name or phone: those are what is being erased).
    customer_external_id = models.CharField(max_length=255, blank=True)
    # SHA-256 of the lower-cased e-mail: finds the shopper's rows without keeping the address.
    email_sha256 = models.CharField(max_length=64, blank=True)
    # The e-mail itself, encrypted, only until the request is done (it finds the shopper's rows).
    subject_email = EncryptedTextField(blank=True, default="")
    order_ids = models.JSONField(default=list, blank=True, help_text="Platform order ids the request names.")
    due_at = models.DateTimeField(help_text="When the request must be completed.")
    completed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="What was done, in words (counts, never personal data).")
    requested_by = models.CharField(max_length=150, blank=True, help_text="platform:shopify, operator:<name>, ...")
    # customers/data_request: what we hold on the shopper, for the merchant (portal download, e-mail).
    export = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "delivery_id"],
                condition=~Q(delivery_id=""),
                name="privacy_request_unique_delivery",
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} ({self.state})"

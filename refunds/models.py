"""The refund domain: channels (apps), orders split into bags, and refunds with their audit trail.

Field names mirror the Violet API objects (docs/violet-api.md: the Order Refund object; bags and
orders). Money is integer minor units plus an ISO currency code.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from violet_refunds.db import CurrencyField, MoneyField, TimeStampedModel, non_negative


class App(TimeStampedModel):
    """A channel: the app the shopper bought through. Its secret is stored hashed."""

    name = models.CharField(max_length=200)
    secret_hash = models.CharField(max_length=128, help_text="Hashed X-Violet-App-Secret.")
    stripe_account_id = models.CharField("Stripe connected account", max_length=255, blank=True, help_text="acct_…")
    commission_rate = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Percent of each bag's sub_total kept by the channel (default for new bags).",
    )
    # Outbound webhooks live in notifications.WebhookEndpoint (several per app, each with its secret).
    allowed_redirect_hosts = models.JSONField(
        default=list,
        blank=True,
        help_text="Hosts the merchant portal may redirect back to after store connection.",
    )
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, through="AppMembership", related_name="apps", blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(commission_rate__gte=0) & Q(commission_rate__lte=100),
                name="app_commission_rate_range",
            )
        ]

    def __str__(self):
        return self.name


class AppMembership(TimeStampedModel):
    """An API user of an app; only the OWNER may mint API tokens (spec section 3)."""

    class Role(models.TextChoices):
        OWNER = "OWNER", "Owner"
        DEVELOPER = "DEVELOPER", "Developer"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.OWNER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "user"], name="app_membership_unique_user")]

    def __str__(self):
        return f"{self.user} @ {self.app}"


class OrderStatus(models.TextChoices):
    IN_PROGRESS = "IN_PROGRESS"
    PROCESSING = "PROCESSING"
    ACCEPTED = "ACCEPTED"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    REJECTED = "REJECTED"
    REQUIRES_ACTION = "REQUIRES_ACTION"


class BagStatus(models.TextChoices):
    IN_PROGRESS = "IN_PROGRESS"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    COMPLETED = "COMPLETED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"
    BACKORDERED = "BACKORDERED"


class FulfillmentStatus(models.TextChoices):
    PROCESSING = "PROCESSING"
    SHIPPED = "SHIPPED"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    DELIVERED = "DELIVERED"
    COULD_NOT_DELIVER = "COULD_NOT_DELIVER"
    RETURNED = "RETURNED"


class FinancialStatus(models.TextChoices):
    UNPAID = "UNPAID"
    AUTHORIZED = "AUTHORIZED"
    PENDING = "PENDING"
    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    VOIDED = "VOIDED"


class Order(TimeStampedModel):
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="orders")
    app_order_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.ACCEPTED, db_index=True)
    # The status the order had before its first refund moved money, put back when refunds stop
    # counting (a late Stripe failure drops the refunded total to zero). "" = never refunded.
    status_before_refund = models.CharField(max_length=20, choices=OrderStatus.choices, blank=True, default="")
    customer_email = models.EmailField(blank=True)
    currency = CurrencyField(default="USD")
    sub_total = MoneyField()
    shipping_total = MoneyField()
    tax_total = MoneyField()
    discount_total = MoneyField()
    total = MoneyField()

    class Meta:
        ordering = ["-date_created"]
        constraints = non_negative("order", "sub_total", "shipping_total", "tax_total", "discount_total", "total")

    def __str__(self):
        return f"Order {self.pk}"


class Bag(TimeStampedModel):
    """The part of an order sold by one merchant; pushed to that merchant's platform."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="bags")
    merchant = models.ForeignKey("platforms.Merchant", on_delete=models.PROTECT, related_name="bags")
    external_id = models.CharField(
        max_length=255, null=True, blank=True, help_text="Order id on the merchant's platform."
    )
    status = models.CharField(max_length=20, choices=BagStatus.choices, default=BagStatus.ACCEPTED, db_index=True)
    fulfillment_status = models.CharField(
        max_length=20, choices=FulfillmentStatus.choices, default=FulfillmentStatus.PROCESSING
    )
    financial_status = models.CharField(max_length=20, choices=FinancialStatus.choices, default=FinancialStatus.PAID)
    # The statuses before the bag's first refund moved money, put back when its refunded total drops
    # to zero again (refunds.services.bags). "" = never refunded.
    status_before_refund = models.CharField(max_length=20, choices=BagStatus.choices, blank=True, default="")
    financial_status_before_refund = models.CharField(
        max_length=20, choices=FinancialStatus.choices, blank=True, default=""
    )
    currency = CurrencyField(default="USD")
    sub_total = MoneyField()
    shipping_total = MoneyField()
    tax_total = MoneyField()
    discount_total = MoneyField()
    total = MoneyField()
    commission_rate = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Percent of sub_total kept by the channel, fixed when the bag was placed.",
    )
    placed_at = models.DateTimeField(help_text="When the order was placed on the platform (Wix rules depend on it).")
    # Violet's name: when the platform's state of this order was last read and reconciled (parity check).
    date_last_consolidated = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the parity check last read the platform's order."
    )

    class Meta:
        ordering = ["-date_created"]
        constraints = [
            *non_negative("bag", "sub_total", "shipping_total", "tax_total", "discount_total", "total"),
            models.CheckConstraint(
                condition=Q(commission_rate__gte=0) & Q(commission_rate__lte=100),
                name="bag_commission_rate_range",
            ),
            models.UniqueConstraint(
                fields=["merchant", "external_id"],
                condition=Q(external_id__isnull=False),
                name="bag_unique_external_id_per_merchant",
            ),
        ]

    def __str__(self):
        return f"Bag {self.pk} ({self.external_id or 'not submitted'})"


class OrderSku(TimeStampedModel):
    bag = models.ForeignKey(Bag, on_delete=models.CASCADE, related_name="skus")
    external_id = models.CharField(max_length=255, blank=True, help_text="Platform line-item id.")
    sku_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=300)
    quantity = models.PositiveIntegerField()
    price = MoneyField(help_text="Unit price, minor units.")
    line_price = MoneyField(help_text="price × quantity, minor units.")
    # Maintained by the refund services in the same transaction as each RefundSku; the CHECK below
    # makes "refunded quantity <= ordered" a database guarantee, not just a validation.
    quantity_refunded = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            *non_negative("order_sku", "price", "line_price"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="order_sku_quantity_min_1"),
            models.CheckConstraint(
                condition=Q(quantity_refunded__gte=0) & Q(quantity_refunded__lte=F("quantity")),
                name="order_sku_refunded_lte_ordered",
            ),
        ]

    def __str__(self):
        return f"{self.name} × {self.quantity}"


class RefundStatus(models.TextChoices):
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    PARTIALLY_COMPLETED = "PARTIALLY_COMPLETED"
    FAILED = "FAILED"
    EXTERNAL = "EXTERNAL"


class ReasonCode(models.TextChoices):
    OTHER = "OTHER"
    CUSTOMER = "CUSTOMER"
    INVENTORY = "INVENTORY"
    FRAUD = "FRAUD"
    DECLINED = "DECLINED"


class RefundSource(models.TextChoices):
    PLATFORM_WEBHOOK = "PLATFORM_WEBHOOK", "Platform webhook"
    PLATFORM_POLL = "PLATFORM_POLL", "Platform poll"
    # Found by reading the platform's order (the parity check): its webhook or poll never told us.
    PARITY_CHECK = "PARITY_CHECK", "Parity check"
    MERCHANT_NOTICE = "MERCHANT_NOTICE", "Merchant notice"
    CHANNEL_API = "CHANNEL_API", "Channel API"
    OPERATOR = "OPERATOR", "Operator"
    # Made at Stripe outside the product (the Stripe Dashboard, the API by hand): learned from
    # Stripe's own webhooks, recorded EXTERNAL so what is still refundable stays true.
    STRIPE_DASHBOARD = "STRIPE_DASHBOARD", "Stripe, outside the product"


class Refund(TimeStampedModel):
    """A refund of (part of) one bag. Fields mirror the API's Order Refund object."""

    bag = models.ForeignKey(Bag, on_delete=models.PROTECT, related_name="refunds")
    external_id = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Refund id on the platform; `cancel:<order id>` for a cancellation-as-refund.",
    )
    status = models.CharField(max_length=20, choices=RefundStatus.choices, default=RefundStatus.PROCESSING)
    amount = MoneyField(help_text="Total refunded to the shopper, minor units of refund_currency.")
    # How `amount` divides: the sub_total part drives commission; shipping and tax go back from
    # the merchant. amount = sub_total_amount + shipping_amount + tax_amount.
    sub_total_amount = MoneyField()
    shipping_amount = MoneyField()
    shipping_tax_amount = MoneyField()
    tax_amount = MoneyField()
    shipping_full_refund = models.BooleanField(default=False)
    shipping_discrepancy_reason = models.CharField(max_length=255, blank=True)
    refund_currency = CurrencyField()
    platform_currency = CurrencyField(blank=True)
    merchant_transfer_reversal_amount_usd = models.BigIntegerField(null=True, blank=True)
    developer_transfer_reversal_amount_usd = models.BigIntegerField(null=True, blank=True)
    merchant_transfer_reversal_amount_platform_currency = models.BigIntegerField(null=True, blank=True)
    developer_transfer_reversal_amount_platform_currency = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    reason_code = models.CharField(max_length=10, choices=ReasonCode.choices, default=ReasonCode.OTHER)
    restock_items = models.BooleanField(default=False)
    notify_customer = models.BooleanField(default=False)
    source = models.CharField(max_length=20, choices=RefundSource.choices)
    inbound_event = models.ForeignKey(
        "platforms.InboundEvent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="refunds",
        help_text="The platform signal that created this refund.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Channel API / portal double-submit protection: the client's Idempotency-Key, unique per bag and
    # sender (`request_scope`: "app:<id>" for a channel, "merchant:<id>" for a merchant's notice), so
    # a channel's key never answers a merchant's notice.
    request_key = models.CharField(max_length=255, null=True, blank=True)
    request_scope = models.CharField(max_length=40, blank=True, default="", db_default="")
    # sha256 of the validated request (refunds.services.record.request_fingerprint) that recorded this
    # refund under an Idempotency-Key or a merchant reference: a repeat must match it. Empty for
    # platform signals and for refunds recorded before fingerprints existed.
    request_fingerprint = models.CharField(max_length=64, blank=True, default="", db_default="")
    # Engine bookkeeping (refunds.services.engine): Stripe attempts, i.e. passes that sent Stripe a
    # call that could move money, plus passes that died before recording an outcome (the budget is
    # REFUND_MAX_ATTEMPTS; look-ups never count), when the last one was charged, when the current
    # pass began (cleared when a pass ends normally) and when the next one is due.
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    outcome_unknown_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set while a money step was sent to Stripe without a definitive answer and no look-up "
        "has settled it since: Stripe may have moved the money. The refund stays PROCESSING and is "
        "looked up at Stripe until it answers.",
    )
    date_completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]
        constraints = [
            *non_negative(
                "refund",
                "sub_total_amount",
                "shipping_amount",
                "shipping_tax_amount",
                "tax_amount",
                "merchant_transfer_reversal_amount_usd",
                "developer_transfer_reversal_amount_usd",
            ),
            # Spelled out: the generated names would pass PostgreSQL's 63-character limit.
            models.CheckConstraint(
                condition=Q(merchant_transfer_reversal_amount_platform_currency__gte=0)
                | Q(merchant_transfer_reversal_amount_platform_currency__isnull=True),
                name="refund_merchant_reversal_platform_ccy_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(developer_transfer_reversal_amount_platform_currency__gte=0)
                | Q(developer_transfer_reversal_amount_platform_currency__isnull=True),
                name="refund_developer_reversal_platform_ccy_non_negative",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount=F("sub_total_amount") + F("shipping_amount") + F("tax_amount")),
                name="refund_amount_is_sum_of_parts",
            ),
            # shipping.tax_amount is the part of tax_amount that was charged on shipping.
            models.CheckConstraint(
                condition=Q(shipping_tax_amount__lte=F("tax_amount")),
                name="refund_shipping_tax_within_tax",
            ),
            models.UniqueConstraint(
                fields=["bag", "external_id"],
                condition=Q(external_id__isnull=False),
                name="refund_unique_external_id_per_bag",
            ),
            models.UniqueConstraint(
                fields=["bag", "request_scope", "request_key"],
                condition=Q(request_key__isnull=False),
                name="refund_unique_request_key_per_sender",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "date_created"], name="refund_status_date"),
            models.Index(fields=["status", "processing_started_at"], name="refund_status_claim"),
        ]

    def __str__(self):
        return f"Refund {self.pk} ({self.get_status_display()})"


class RefundSku(TimeStampedModel):
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="skus")
    order_sku = models.ForeignKey(OrderSku, on_delete=models.PROTECT, related_name="refund_skus")
    quantity_refunded = models.PositiveIntegerField()
    amount_refunded = MoneyField(null=True, blank=True)
    external_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity_refunded__gte=1), name="refund_sku_quantity_min_1"),
            *non_negative("refund_sku", "amount_refunded"),
            models.UniqueConstraint(fields=["refund", "order_sku"], name="refund_sku_unique_line"),
        ]

    def __str__(self):
        return f"{self.order_sku} × {self.quantity_refunded}"


class RefundStep(models.TextChoices):
    MERCHANT_REVERSAL = "MERCHANT_REVERSAL", "Reverse merchant transfer"
    CHANNEL_REVERSAL = "CHANNEL_REVERSAL", "Reverse channel transfer"
    SHOPPER_REFUND = "SHOPPER_REFUND", "Refund shopper"


class RefundError(models.Model):
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="errors")
    error_code = models.IntegerField(help_text="Stable numeric code (see refunds.errors).")
    error_message = models.TextField()
    step = models.CharField(max_length=20, choices=RefundStep.choices, blank=True)
    gateway_code = models.CharField(
        max_length=100, blank=True, help_text="Stripe's error code, e.g. balance_insufficient."
    )
    resolved = models.BooleanField(default=False)
    date_resolved = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    date_created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["resolved", "date_created"], name="refund_error_open")]

    def __str__(self):
        return f"{self.error_code}: {self.error_message[:60]}"


class RefundEvent(models.Model):
    """Append-only audit trail: who or what changed a refund, and when."""

    class Kind(models.TextChoices):
        RECORDED = "RECORDED"
        CLAIMED = "CLAIMED"
        STEP_SUCCEEDED = "STEP_SUCCEEDED"
        STEP_FAILED = "STEP_FAILED"
        RETRY_SCHEDULED = "RETRY_SCHEDULED"
        LOOKUP_SCHEDULED = "LOOKUP_SCHEDULED"  # an outcome is unknown: looked up again later, nothing sent
        STATUS_CHANGED = "STATUS_CHANGED"
        RETRY_REQUESTED = "RETRY_REQUESTED"
        MARKED_EXTERNAL = "MARKED_EXTERNAL"
        CANCELED = "CANCELED"
        ERROR_RESOLVED = "ERROR_RESOLVED"
        REQUEUED = "REQUEUED"
        NOTE = "NOTE"
        FORWARDING = "FORWARDING"  # a step of the refund's trip to the merchant's platform

    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=150, help_text="system, worker, platform:<name>, operator:<username>, ...")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    date_created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.kind} by {self.actor}"


class ReconciliationFinding(TimeStampedModel):
    """A difference between our books and Stripe's that an operator must look at: found by the
    nightly reconciliation (refunds.reconciliation) or told by a Stripe event (a refund or reversal
    made outside the product, a dispute, a refund that failed after succeeding).

    Opened once per difference (`key` names it: the same difference found again only updates
    `last_seen_at` and `times_seen`, even once resolved, so an accepted difference does not come back
    every night)."""

    class State(models.TextChoices):
        OPEN = "OPEN", "Open"
        RESOLVED = "RESOLVED", "Resolved"

    class Origin(models.TextChoices):
        RECONCILIATION = "RECONCILIATION", "Nightly reconciliation"
        STRIPE_EVENT = "STRIPE_EVENT", "Stripe event"

    key = models.CharField(max_length=255, unique=True, help_text="What identifies this difference.")
    origin = models.CharField(max_length=20, choices=Origin.choices)
    kind = models.CharField(max_length=40, db_index=True)
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, null=True, blank=True, related_name="findings")
    bag = models.ForeignKey(Bag, on_delete=models.CASCADE, null=True, blank=True, related_name="findings")
    step = models.CharField(max_length=20, choices=RefundStep.choices, blank=True)
    detail = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    times_seen = models.PositiveIntegerField(default=1)
    last_seen_at = models.DateTimeField()
    date_resolved = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-date_created"]
        indexes = [models.Index(fields=["state", "date_created"], name="finding_state_date")]

    def __str__(self):
        return f"{self.kind}: {self.detail[:60]}"


class ForwardingState(models.TextChoices):
    """Where a channel refund stands with the merchant's platform (refunds.services.forwarding).
    Money moves only in ACCEPTED, NOT_FORWARDED and BYPASSED (`MONEY_MAY_MOVE`)."""

    PENDING = "PENDING", "Waiting to be sent to the platform"
    SENDING = "SENDING", "Being sent to the platform"
    RETRYING = "RETRYING", "Platform unreachable, retrying"
    STALLED = "STALLED", "Platform unreachable, waiting for an operator"
    ACCEPTED = "ACCEPTED", "Accepted by the platform"
    REFUSED = "REFUSED", "Refused by the platform"
    NOT_FORWARDED = "NOT_FORWARDED", "Platform cannot be written to: merchant told"
    BYPASSED = "BYPASSED", "Money moved without the platform (operator)"


class RefundForwarding(TimeStampedModel):
    """A channel refund's trip to the merchant's platform, before its money moves (issue 14).

    One row per channel refund. `attempts` counts sends against FORWARDING_MAX_ATTEMPTS (an operator
    retry starts a new budget); `sends` counts every request that may have reached the platform and
    is never reset: once it is above zero the platform is searched for our marker before sending
    again, so a refund is never created twice there. `mirror_done_at`: the merchant ticked the
    "mirror this refund" task off in the portal (NOT_FORWARDED and BYPASSED refunds)."""

    refund = models.OneToOneField(Refund, on_delete=models.CASCADE, related_name="forwarding")
    platform = models.CharField(max_length=20, blank=True)
    state = models.CharField(max_length=20, choices=ForwardingState.choices, default=ForwardingState.PENDING)
    reason = models.CharField(max_length=255, blank=True, help_text="Why it was not forwarded, when it was not.")
    platform_refund_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    sends = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    date_accepted = models.DateTimeField(null=True, blank=True)
    mirror_done_at = models.DateTimeField(null=True, blank=True)
    mirror_done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-date_created"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="refund_forwarding_due")]

    def __str__(self):
        return f"Forwarding of refund {self.refund_id} ({self.state})"

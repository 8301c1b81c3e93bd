"""The sandbox's Stripe world, kept in the database so every process (test, web, Celery worker) sees it.

Amounts are integer minor units and currencies are lower-case, exactly as Stripe stores them. Every
object keeps its Stripe id (`pi_…`, `tr_…`) in `stripe_id`; the integer primary key only gives lists
a strict newest-first order, as Stripe's lists have.
"""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class FaultKind(models.TextChoices):
    # Before Stripe's idempotency layer: nothing executes and nothing is stored under the key.
    CONNECTION_ERROR = "connection_error", "Connection error (request never arrived)"
    TIMEOUT = "timeout", "Timeout (request never arrived)"
    HTTP_429 = "http_429", "429 rate limited"
    HTTP_409 = "http_409", "409 idempotency_key_in_use"
    HTTP_503 = "http_503", "503 before the idempotency layer (not stored)"
    # While the endpoint executes: the outcome is stored under the idempotency key.
    HTTP_500 = "http_500", "500 api_error (stored under the key, replayed)"
    RESPONSE_LOST = "response_lost", "Response lost after the effect"
    STALL = "stall", "Endpoint holds the key 'executing' for stall_seconds"
    # Business outcomes, consumed only by the endpoint they concern.
    BALANCE_INSUFFICIENT = "balance_insufficient", "Next reversal: connected balance too low"
    CHARGE_ALREADY_REFUNDED = "charge_already_refunded", "Next refund: charge already refunded"
    CHARGE_DISPUTED = "charge_disputed", "Next refund: charge disputed"
    REFUND_FAILS_ASYNC = "refund_fails_async", "Next refund: pending, then failed on a later read"
    # Scheduled refund lifecycles: the transition is due `settle_after_seconds` after creation on the
    # sandbox clock (0 = on the next read or sweep); `failure_reason` says why a refund fails.
    REFUND_PENDING = "refund_pending", "Next refund: pending, then succeeded when due"
    REFUND_PENDING_FAILS = "refund_pending_fails", "Next refund: pending, then failed when due"
    REFUND_PENDING_CANCELED = "refund_pending_canceled", "Next refund: pending, then canceled when due"
    REFUND_FAILS_LATER = "refund_fails_later", "Next refund: succeeded, then failed when due"


class RefundFailureReason(models.TextChoices):
    """Stripe's documented values of `refund.failure_reason` (API reference, the Refund object)."""

    LOST_OR_STOLEN_CARD = "lost_or_stolen_card"
    EXPIRED_OR_CANCELED_CARD = "expired_or_canceled_card"
    CHARGE_FOR_PENDING_REFUND_DISPUTED = "charge_for_pending_refund_disputed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DECLINED = "declined"
    MERCHANT_REQUEST = "merchant_request"
    UNKNOWN = "unknown"


class SandboxClock(models.Model):
    """The sandbox's notion of now (one row at most; none = real time). Tests and the switchboard move
    it forward so scheduled refund transitions fall due without waiting. Stored in the database so a
    worker process reads the same time as the test that set it."""

    frozen_at = models.DateTimeField(null=True, blank=True, help_text="Fixed time; null = real time + offset.")
    offset_seconds = models.FloatField(default=0.0)

    def __str__(self):
        return f"frozen at {self.frozen_at}" if self.frozen_at else f"real time {self.offset_seconds:+.0f}s"


class SandboxAccount(models.Model):
    """A Stripe account: the platform itself (one row, `is_platform`) or a Connect account."""

    stripe_id = models.CharField(max_length=64, unique=True)
    default_currency = models.CharField(max_length=3, default="usd")
    is_platform = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_platform"], condition=Q(is_platform=True), name="sandbox_one_platform_account"
            )
        ]

    def __str__(self):
        return self.stripe_id


class SandboxBalance(models.Model):
    """Available balance of one account in one currency. The platform's may go negative; no check."""

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="balances")
    currency = models.CharField(max_length=3)
    available = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "currency"], name="sandbox_balance_unique_currency")]

    def __str__(self):
        return f"{self.account_id} {self.available} {self.currency}"


class SandboxPaymentIntent(models.Model):
    """A PaymentIntent and its single charge (`charge_id`, set once it succeeded)."""

    stripe_id = models.CharField(max_length=64, unique=True)
    charge_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    amount = models.BigIntegerField()
    amount_refunded = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=40)
    payment_method = models.CharField(max_length=100, blank=True)
    receipt_email = models.CharField(max_length=254, blank=True)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    disputed = models.BooleanField(default=False)
    # Stripe's test card 4000000000005126 (pm_card_refundFail): every refund on this charge succeeds,
    # then fails some time later.
    refunds_fail_later = models.BooleanField(default=False)
    # Stripe's test card 4000000000007726 (pm_card_pendingRefund): every refund on this charge is
    # pending, then succeeds some time later.
    refunds_pending = models.BooleanField(default=False)
    # The PaymentMethod Stripe creates from a test token (pm_card_visa -> pm_1Q…).
    payment_method_id = models.CharField(max_length=64, blank=True)
    balance_transaction = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount")),
                name="sandbox_pi_refunded_within_amount",
            )
        ]

    def __str__(self):
        return self.stripe_id


class SandboxTransfer(models.Model):
    stripe_id = models.CharField(max_length=64, unique=True)
    destination = models.ForeignKey(SandboxAccount, on_delete=models.PROTECT, related_name="transfers_in")
    amount = models.BigIntegerField()
    amount_reversed = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    source_transaction = models.CharField(max_length=64, blank=True)
    transfer_group = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    balance_transaction = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_reversed__gte=0) & Q(amount_reversed__lte=F("amount")),
                name="sandbox_transfer_reversed_within_amount",
            )
        ]

    def __str__(self):
        return self.stripe_id


class SandboxTransferReversal(models.Model):
    stripe_id = models.CharField(max_length=64, unique=True)
    transfer = models.ForeignKey(SandboxTransfer, on_delete=models.CASCADE, related_name="reversals")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    balance_transaction = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator

    def __str__(self):
        return self.stripe_id


class SandboxRefund(models.Model):
    stripe_id = models.CharField(max_length=64, unique=True)
    payment_intent = models.ForeignKey(SandboxPaymentIntent, on_delete=models.CASCADE, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20)
    failure_reason = models.CharField(max_length=100, blank=True)
    pending_reason = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    balance_transaction = models.CharField(max_length=64, blank=True)
    failure_balance_transaction = models.CharField(max_length=64, blank=True)
    # Pending now, flipped to failed by the next read (retrieve or list) of this refund, whatever the
    # clock says (the `refund_fails_async` fault).
    fails_on_next_read = models.BooleanField(default=False)
    # A scheduled transition: to `settles_to` (succeeded, failed, canceled) once the sandbox clock
    # reaches `settles_at`, applied by any read of the refund and by the sweep.
    settles_to = models.CharField(max_length=20, blank=True)
    settles_at = models.DateTimeField(null=True, blank=True)
    settle_failure_reason = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator

    class Meta:
        indexes = [models.Index(fields=["settles_at"], name="sandbox_refund_settles_at")]

    def __str__(self):
        return self.stripe_id


class SandboxBalanceTransaction(models.Model):
    """A movement of the platform's balance (`txn_…`): a charge, a refund, a failed refund, a transfer
    or a transfer reversal. Fees are 0 in the sandbox, so `net` equals `amount`."""

    stripe_id = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="balance_transactions")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    type = models.CharField(max_length=40)
    reporting_category = models.CharField(max_length=40)
    source = models.CharField(max_length=64, help_text="Stripe id of the object that moved the money.")
    description = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator

    def __str__(self):
        return self.stripe_id


class SandboxDispute(models.Model):
    """A dispute (`dp_…`) opened on a charge by a test (ledger.dispute_charge) or pm_card_createDispute."""

    stripe_id = models.CharField(max_length=64, unique=True)
    payment_intent = models.ForeignKey(SandboxPaymentIntent, on_delete=models.CASCADE, related_name="disputes")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=40, default="fraudulent")
    status = models.CharField(max_length=40, default="needs_response")
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator

    def __str__(self):
        return self.stripe_id


class SandboxEvent(models.Model):
    """A Stripe Event the sandbox emitted (`evt_…`), with its webhook delivery state."""

    class Delivery(models.TextChoices):
        PENDING = "pending"  # delivery runs once the transaction that emitted it commits
        DELIVERED = "delivered"
        FAILED = "failed"  # retried by the sweep, at most MAX_DELIVERY_ATTEMPTS times
        NO_ENDPOINT = "no_endpoint"  # neither STRIPE_SANDBOX_WEBHOOK_URL nor _RECEIVER was set

    stripe_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=60, db_index=True)
    created = models.DateTimeField(default=timezone.now)  # the sandbox clock's time, set by the creator
    body = models.JSONField(help_text="The whole Event object as delivered.")
    delivery = models.CharField(max_length=20, choices=Delivery.choices, default=Delivery.PENDING)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    last_delivery_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["delivery"], name="sandbox_event_delivery")]

    def __str__(self):
        return f"{self.stripe_id} {self.type}"


class SandboxIdempotencyKey(models.Model):
    """One Idempotency-Key per account: the request it was first used for and the stored response."""

    class State(models.TextChoices):
        EXECUTING = "executing"
        DONE = "done"

    account_scope = models.CharField(max_length=64, blank=True, help_text="Stripe-Account, '' = platform.")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and decoded params.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.EXECUTING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account_scope", "key"], name="sandbox_idempotency_key_unique")]

    def __str__(self):
        return self.key


class SandboxFault(models.Model):
    """An injected failure for the next `remaining` matching calls, consumed one call at a time."""

    kind = models.CharField(max_length=40, choices=FaultKind.choices)
    remaining = models.PositiveIntegerField(default=1)
    path_pattern = models.CharField(
        max_length=255, blank=True, help_text="Glob over the URL path, e.g. /v1/transfers/*/reversals; '' = any."
    )
    method = models.CharField(max_length=10, blank=True, help_text="GET or POST; '' = any.")
    stall_seconds = models.FloatField(default=1.0)
    settle_after_seconds = models.FloatField(
        default=0.0, help_text="Refund lifecycle faults: seconds on the sandbox clock until the transition."
    )
    failure_reason = models.CharField(
        max_length=40, blank=True, choices=RefundFailureReason.choices, help_text="Refund faults that fail."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "remaining"], name="sandbox_fault_kind_remaining")]

    def __str__(self):
        return f"{self.kind} x{self.remaining}"


class SandboxRequest(models.Model):
    """Every call the transport received, with what it answered (status 0 = no response)."""

    method = models.CharField(max_length=10)
    path = models.CharField(max_length=255, db_index=True)
    account = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    stripe_version = models.CharField(max_length=40, blank=True, help_text="The request's Stripe-Version header.")
    status_code = models.PositiveSmallIntegerField(default=0)
    fault = models.CharField(max_length=40, blank=True)
    replayed = models.BooleanField(default=False)
    request_id = models.CharField(max_length=40)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.method} {self.path} -> {self.status_code}"

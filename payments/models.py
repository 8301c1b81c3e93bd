"""Money that moved through Stripe: the shopper's charge, transfers out, and what a refund pulled back.

Field names mirror the API's Transfer and Transfer Reversal objects (docs/violet-api.md, Money).
"""

from django.db import models
from django.db.models import F, Q

from violet_refunds.db import CurrencyField, MoneyField, TimeStampedModel, non_negative


class PaymentTransaction(TimeStampedModel):
    """The shopper's payment for one order (one Stripe PaymentIntent / charge per order)."""

    order = models.OneToOneField("refunds.Order", on_delete=models.PROTECT, related_name="payment_transaction")
    gateway_transaction_id = models.CharField(max_length=255, unique=True, help_text="Stripe PaymentIntent id (pi_…).")
    gateway_charge_id = models.CharField(max_length=255, blank=True, help_text="ch_…")
    amount = MoneyField()
    amount_refunded = MoneyField()
    currency = CurrencyField()
    capture_status = models.CharField(max_length=32, default="CAPTURED")
    # The charge's dispute as Stripe's charge.dispute.* events report it (stripe_events). Blank: never
    # disputed. While it is open, or once the shopper won it (`lost`: the card network already
    # returned the money), no refund may be made of this payment (DISPUTE_BLOCKING_STATUSES).
    dispute_id = models.CharField(max_length=255, blank=True, help_text="du_… / dp_…")
    dispute_status = models.CharField(max_length=32, blank=True, help_text="Stripe's dispute status.")
    dispute_reason = models.CharField(max_length=64, blank=True)
    dispute_amount = MoneyField(help_text="Disputed amount, minor units of `currency`.")
    # Stripe's `created` of the last event applied: an older event arriving later changes nothing.
    dispute_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            *non_negative("payment_transaction", "amount", "amount_refunded"),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=F("amount")),
                name="payment_transaction_refunded_lte_amount",
            ),
        ]

    def __str__(self):
        return self.gateway_transaction_id

    @property
    def refunds_blocked_by_dispute(self) -> bool:
        return self.dispute_status in DISPUTE_BLOCKING_STATUSES


# Stripe dispute statuses (API reference, the Dispute object) under which refunding is refused: every
# open status, and `lost` (the shopper got the money back through the dispute). `won`,
# `warning_closed` (an inquiry closed without a chargeback) and `prevented` leave refunds possible.
DISPUTE_BLOCKING_STATUSES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost"}
)
# A dispute in one of these statuses is decided and never reopens (API reference, the Dispute object).
DISPUTE_CLOSED_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})


class Recipient(models.TextChoices):
    MERCHANT = "MERCHANT", "Merchant"
    DEVELOPER = "DEVELOPER", "Channel (developer)"


class Transfer(TimeStampedModel):
    """Money sent to a connected account for one bag: the merchant's payout or the channel's commission."""

    class Status(models.TextChoices):
        SENT = "SENT"
        REVERSED = "REVERSED"
        PARTIALLY_REVERSED = "PARTIALLY_REVERSED"
        PENDING = "PENDING"
        FAILED = "FAILED"
        BYPASSED = "BYPASSED"

    bag = models.ForeignKey("refunds.Bag", on_delete=models.PROTECT, related_name="transfers")
    payment_transaction = models.ForeignKey(PaymentTransaction, on_delete=models.PROTECT, related_name="transfers")
    recipient = models.CharField(max_length=10, choices=Recipient.choices)
    destination_account_id = models.CharField(max_length=255, help_text="acct_…")
    gateway_transfer_id = models.CharField(
        max_length=255, unique=True, null=True, blank=True, help_text="Stripe transfer id (tr_…)."
    )
    # The transfer in the bag's currency and in the currency Stripe moved it in (platform currency).
    bag_amount = MoneyField()
    bag_currency = CurrencyField()
    amount = MoneyField()
    currency = CurrencyField()
    reversed_amount = MoneyField(help_text="Sum of completed reversals, in `currency`.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SENT)

    class Meta:
        constraints = [
            *non_negative("transfer", "bag_amount", "amount", "reversed_amount"),
            models.CheckConstraint(
                condition=Q(reversed_amount__lte=F("amount")),
                name="transfer_reversed_lte_amount",
            ),
            models.UniqueConstraint(fields=["bag", "recipient"], name="transfer_unique_recipient"),
        ]

    def __str__(self):
        return f"{self.get_recipient_display()} transfer {self.gateway_transfer_id or self.pk}"


class TransferReversal(TimeStampedModel):
    """The part of one transfer a refund pulls back. One per (refund, transfer)."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        COMPLETE = "COMPLETE"
        FAILED = "FAILED"

    refund = models.ForeignKey("refunds.Refund", on_delete=models.PROTECT, related_name="transfer_reversals")
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="reversals")
    amount = MoneyField(help_text="In the transfer's currency.")
    currency = CurrencyField()
    bag_amount = MoneyField(help_text="The same amount in the bag's currency.")
    gateway_reversal_id = models.CharField(max_length=255, unique=True, null=True, blank=True, help_text="trr_…")
    idempotency_key = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Calls made with the current key; after the first, the engine looks the object up at Stripe
    # before calling again (an earlier call may have succeeded with its response lost).
    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        constraints = [
            *non_negative("transfer_reversal", "amount", "bag_amount"),
            models.UniqueConstraint(fields=["refund", "transfer"], name="transfer_reversal_unique_per_refund"),
        ]
        indexes = [models.Index(fields=["status", "date_created"], name="reversal_status_date")]

    def __str__(self):
        return f"Reversal {self.gateway_reversal_id or self.pk} ({self.status})"


class ShopperRefund(TimeStampedModel):
    """The money returned to the shopper's card for one refund."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        CANCELED = "CANCELED"

    refund = models.OneToOneField("refunds.Refund", on_delete=models.PROTECT, related_name="shopper_refund")
    payment_transaction = models.ForeignKey(
        PaymentTransaction, on_delete=models.PROTECT, related_name="shopper_refunds"
    )
    amount = MoneyField()
    currency = CurrencyField()
    gateway_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True, help_text="re_…")
    idempotency_key = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        constraints = non_negative("shopper_refund", "amount")
        indexes = [models.Index(fields=["status", "date_created"], name="shopper_refund_status_date")]

    def __str__(self):
        return f"Shopper refund {self.gateway_refund_id or self.pk} ({self.status})"

"""Read-only admin pages so operators (and developers running the demo) can inspect the sandbox world.

Registered only while the sandbox is in use (no STRIPE_API_KEY, see stripe_sandbox.apps): a deployment
on real Stripe shows no sandbox pages. The app itself stays installed either way (its migrations and
tables are part of the schema history; removing the app would break `migrate`).
"""

from django.contrib import admin

from violet_refunds.admin import ReadOnlyAdminMixin, ReadOnlyTabularInline

from .apps import sandbox_in_use
from .models import (
    SandboxAccount,
    SandboxBalance,
    SandboxBalanceTransaction,
    SandboxDispute,
    SandboxEvent,
    SandboxFault,
    SandboxIdempotencyKey,
    SandboxPaymentIntent,
    SandboxRefund,
    SandboxRequest,
    SandboxTransfer,
    SandboxTransferReversal,
)


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Sandbox objects change only through the Stripe API emulation or the test ledger."""


class BalanceInline(ReadOnlyTabularInline):
    model = SandboxBalance
    fields = ("currency", "available")
    readonly_fields = fields
    show_change_link = False  # balances have no admin page of their own


class SandboxAccountAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "is_platform", "default_currency", "created")
    search_fields = ("stripe_id",)
    inlines = [BalanceInline]


class SandboxPaymentIntentAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "charge_id", "amount", "amount_refunded", "currency", "status", "disputed", "created")
    list_filter = ("status", "disputed", "currency")
    search_fields = ("stripe_id", "charge_id")


class SandboxTransferAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "destination", "amount", "amount_reversed", "currency", "transfer_group", "created")
    list_filter = ("currency",)
    search_fields = ("stripe_id", "destination__stripe_id", "transfer_group", "source_transaction")
    list_select_related = ("destination",)


class SandboxTransferReversalAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "transfer", "amount", "currency", "created")
    search_fields = ("stripe_id", "transfer__stripe_id")
    list_select_related = ("transfer",)


class SandboxRefundAdmin(ReadOnlyAdmin):
    list_display = (
        "stripe_id",
        "payment_intent",
        "amount",
        "currency",
        "status",
        "failure_reason",
        "settles_to",
        "settles_at",
        "created",
    )
    list_filter = ("status",)
    search_fields = ("stripe_id", "payment_intent__stripe_id", "payment_intent__charge_id")
    list_select_related = ("payment_intent",)


class SandboxIdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ("key", "account_scope", "method", "path", "state", "response_status", "created")
    list_filter = ("state", "response_status")
    search_fields = ("key", "path")


class SandboxFaultAdmin(ReadOnlyAdmin):
    list_display = ("kind", "remaining", "path_pattern", "method", "created")
    list_filter = ("kind",)


class SandboxRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "created",
        "method",
        "path",
        "status_code",
        "fault",
        "replayed",
        "idempotency_key",
        "stripe_version",
        "request_id",
    )
    list_filter = ("method", "status_code", "fault", "replayed")
    search_fields = ("path", "idempotency_key", "request_id")


class SandboxBalanceTransactionAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "type", "amount", "currency", "source", "created")
    list_filter = ("type", "currency")
    search_fields = ("stripe_id", "source")


class SandboxDisputeAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "payment_intent", "amount", "currency", "reason", "status", "created")
    list_filter = ("status",)
    search_fields = ("stripe_id", "payment_intent__stripe_id", "payment_intent__charge_id")
    list_select_related = ("payment_intent",)


class SandboxEventAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "type", "created", "delivery", "delivery_attempts")
    list_filter = ("type", "delivery")
    search_fields = ("stripe_id",)


SANDBOX_ADMINS = {
    SandboxAccount: SandboxAccountAdmin,
    SandboxPaymentIntent: SandboxPaymentIntentAdmin,
    SandboxTransfer: SandboxTransferAdmin,
    SandboxTransferReversal: SandboxTransferReversalAdmin,
    SandboxRefund: SandboxRefundAdmin,
    SandboxBalanceTransaction: SandboxBalanceTransactionAdmin,
    SandboxDispute: SandboxDisputeAdmin,
    SandboxEvent: SandboxEventAdmin,
    SandboxIdempotencyKey: SandboxIdempotencyKeyAdmin,
    SandboxFault: SandboxFaultAdmin,
    SandboxRequest: SandboxRequestAdmin,
}

if sandbox_in_use():
    for model, model_admin in SANDBOX_ADMINS.items():
        admin.site.register(model, model_admin)

"""The sandbox's Stripe world as tests, demos and benchmarks see it.

Read side (the oracle): what Stripe holds, straight from the database, without going through the
SDK, so a test can assert "exactly one refund exists" whatever the code under test believed.
Write side: connected accounts, balances, disputes, and the fault switchboard.
Currencies are accepted in either case and stored lower-case, as Stripe does.
"""

from datetime import datetime

from django.db import transaction

from . import balances, clock, faults, idempotency, lifecycle
from . import events as sandbox_events
from .ids import new_id
from .models import (
    FaultKind,
    RefundFailureReason,
    SandboxAccount,
    SandboxBalance,
    SandboxBalanceTransaction,
    SandboxClock,
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

__all__ = [
    "FaultKind",
    "RefundFailureReason",
    "advance_clock",
    "balance",
    "call_count",
    "calls",
    "clear_faults",
    "close_dispute",
    "create_account",
    "deliver_events",
    "dispute_charge",
    "events",
    "faults_remaining",
    "forget_idempotency_keys",
    "freeze_clock",
    "inject_fault",
    "now",
    "payment_intent",
    "real_time_clock",
    "refunds_for",
    "reset",
    "reversals_for",
    "schedule_refund",
    "set_balance",
    "sweep",
    "transfer",
    "transfers_to",
]


# --- accounts and balances ---


def create_account(account_id: str | None = None, balance: int = 0, currency: str = "usd") -> str:
    """A Connect account (`acct_…`) with `balance` available in `currency`. Returns its id."""
    currency = currency.lower()
    with transaction.atomic():
        account = SandboxAccount.objects.create(stripe_id=account_id or new_id("acct", 16), default_currency=currency)
        SandboxBalance.objects.create(account=account, currency=currency, available=balance)
    return account.stripe_id


def set_balance(account_id: str, amount: int, currency: str = "usd") -> None:
    """Set a connected account's available balance (e.g. too low for the next reversal)."""
    with transaction.atomic():
        account = SandboxAccount.objects.get(stripe_id=account_id, is_platform=False)
        row = balances.locked_balance(account, currency.lower())
        row.available = amount
        row.save(update_fields=["available"])


def balance(account_id: str | None = None, currency: str = "usd") -> int:
    """Available balance of a connected account, or of the platform when `account_id` is None."""
    account = balances.platform_account() if account_id is None else SandboxAccount.objects.get(stripe_id=account_id)
    return balances.available(account, currency.lower())


# --- objects ---


def payment_intent(payment_intent_id: str) -> SandboxPaymentIntent:
    return SandboxPaymentIntent.objects.get(stripe_id=payment_intent_id)


def refunds_for(payment_intent_id: str) -> list[SandboxRefund]:
    """Every refund of the payment intent's charge, oldest first, as stored (no async flip applied)."""
    return list(
        SandboxRefund.objects.filter(payment_intent__stripe_id=payment_intent_id)
        .select_related("payment_intent")
        .order_by("pk")
    )


def transfer(transfer_id: str) -> SandboxTransfer:
    return SandboxTransfer.objects.select_related("destination").get(stripe_id=transfer_id)


def transfers_to(account_id: str) -> list[SandboxTransfer]:
    return list(SandboxTransfer.objects.filter(destination__stripe_id=account_id).order_by("pk"))


def reversals_for(transfer_id: str) -> list[SandboxTransferReversal]:
    return list(SandboxTransferReversal.objects.filter(transfer__stripe_id=transfer_id).order_by("pk"))


def dispute_charge(payment_intent_id: str, reason: str = "fraudulent") -> str:
    """The shopper disputed the charge (as Stripe's pm_card_createDispute does): from now on every refund
    of it fails with `charge_disputed`, a pending one fails with charge_for_pending_refund_disputed, and
    `charge.dispute.created` is emitted. Returns the dispute's id (`dp_…`)."""
    with transaction.atomic():
        pi = SandboxPaymentIntent.objects.select_for_update().get(stripe_id=payment_intent_id)
        return lifecycle.open_dispute(pi, reason=reason).stripe_id


def close_dispute(dispute_id: str, status: str = "lost") -> None:
    """The dispute is decided (won, lost, warning_closed): `charge.dispute.closed` is emitted."""
    lifecycle.close_dispute(dispute_id, status)


# --- the sandbox clock and the refund lifecycle ---


def now() -> datetime:
    return clock.now()


def freeze_clock(at: datetime) -> None:
    """Stop the sandbox clock at `at` (every process sees it: it is stored in the database)."""
    clock.freeze(at)


def advance_clock(seconds: float) -> datetime:
    """Move the sandbox clock forward; transitions that fall due apply on the next read or sweep."""
    return clock.advance(seconds)


def real_time_clock() -> None:
    clock.reset()


def schedule_refund(refund_id: str, to: str, *, after_seconds: float = 0.0, failure_reason: str = "") -> None:
    """Make a refund move to `to` (succeeded/failed/canceled from pending; failed from succeeded)
    `after_seconds` from now on the sandbox clock, failing with `failure_reason` (Stripe's values)."""
    lifecycle.schedule_refund(refund_id, to, after_seconds=after_seconds, failure_reason=failure_reason)


def sweep() -> lifecycle.SweepResult:
    """Settle the refunds whose time came and retry failed webhook deliveries (what beat runs)."""
    return lifecycle.sweep()


def events(event_type: str | None = None) -> list[SandboxEvent]:
    """The events the sandbox emitted, oldest first (optionally of one type)."""
    queryset = SandboxEvent.objects.order_by("pk")
    if event_type:
        queryset = queryset.filter(type=event_type)
    return list(queryset)


def deliver_events() -> int:
    """Deliver every event not delivered yet (e.g. emitted inside a test's never-committed transaction)."""
    pending = SandboxEvent.objects.exclude(delivery=SandboxEvent.Delivery.DELIVERED).order_by("pk")
    delivered = [sandbox_events.deliver(event_pk) for event_pk in pending.values_list("pk", flat=True)]
    return delivered.count(SandboxEvent.Delivery.DELIVERED)


# --- calls received ---


def calls(path_prefix: str | None = None, method: str | None = None) -> list[SandboxRequest]:
    queryset = SandboxRequest.objects.order_by("pk")
    if path_prefix:
        queryset = queryset.filter(path__startswith=path_prefix)
    if method:
        queryset = queryset.filter(method=method.upper())
    return list(queryset)


def call_count(path_prefix: str | None = None, method: str | None = None) -> int:
    """How many calls reached the sandbox (including failed and faulted ones), e.g. '/v1/refunds'."""
    queryset = SandboxRequest.objects.all()
    if path_prefix:
        queryset = queryset.filter(path__startswith=path_prefix)
    if method:
        queryset = queryset.filter(method=method.upper())
    return queryset.count()


# --- faults and idempotency keys ---


def inject_fault(
    kind: str,
    times: int = 1,
    path: str | None = None,
    *,
    method: str | None = None,
    stall_seconds: float = 1.0,
    settle_after_seconds: float = 0.0,
    failure_reason: str = "",
) -> SandboxFault:
    """The next `times` calls matching `path` and `method` fail.

    `path` is a glob over the whole URL path: '/v1/refunds' (create and list refunds),
    '/v1/refunds*' (also retrieve), '/v1/transfers/*/reversals' (every reversal); None = any call.

    Kinds (FaultKind): connection_error, timeout, http_429, http_409, http_503 strike before the
    idempotency layer (nothing stored, a same-key retry executes); http_500 (stored under the key:
    a same-key retry replays the 500), response_lost (the effect commits and the key stores the
    success, then the client gets a connection error), stall (the key stays 'executing' for
    `stall_seconds`, so a concurrent same-key call gets 409) strike when an endpoint executes;
    balance_insufficient (next reversal), charge_already_refunded, charge_disputed and the refund
    lifecycle faults (next refund) are taken only by the endpoint they concern: refund_fails_async
    (pending, failed on the next read), refund_pending (pending, then succeeded), refund_pending_fails,
    refund_pending_canceled and refund_fails_later (succeeded, then failed), each due
    `settle_after_seconds` after creation on the sandbox clock; a failing one fails with
    `failure_reason` (Stripe's values, RefundFailureReason; default expired_or_canceled_card).
    """
    return faults.inject(
        kind,
        times=times,
        path=path,
        method=method,
        stall_seconds=stall_seconds,
        settle_after_seconds=settle_after_seconds,
        failure_reason=failure_reason,
    )


def clear_faults() -> int:
    deleted, _ = SandboxFault.objects.all().delete()
    return deleted


def faults_remaining(kind: str | None = None) -> int:
    """Units of injected faults not consumed yet."""
    queryset = SandboxFault.objects.filter(remaining__gt=0)
    if kind:
        queryset = queryset.filter(kind=kind)
    return sum(queryset.values_list("remaining", flat=True))


def forget_idempotency_keys() -> int:
    """Prune every stored key, as Stripe does after 24 hours: a reused key then executes anew."""
    return idempotency.forget_all()


def reset() -> None:
    """Empty the sandbox world (objects, accounts, keys, faults, events, call log) and return to real time."""
    with transaction.atomic():
        for model in (
            SandboxRequest,
            SandboxFault,
            SandboxIdempotencyKey,
            SandboxEvent,
            SandboxClock,
            SandboxBalanceTransaction,
            SandboxDispute,
            SandboxRefund,
            SandboxTransferReversal,
            SandboxTransfer,
            SandboxPaymentIntent,
            SandboxBalance,
            SandboxAccount,
        ):
            model.objects.all().delete()

"""Accounts and their available balances. Callers run inside `transaction.atomic()`.

Lock order everywhere (no deadlocks between endpoints): transfer row, payment intent row, connected
account balance, platform balance.
"""

from django.db.models import F

from .ids import PLATFORM_ACCOUNT_ID, new_id
from .models import SandboxAccount, SandboxBalance, SandboxBalanceTransaction


def platform_account() -> SandboxAccount:
    account, _ = SandboxAccount.objects.get_or_create(is_platform=True, defaults={"stripe_id": PLATFORM_ACCOUNT_ID})
    return account


def connected_account(stripe_id: str) -> SandboxAccount | None:
    return SandboxAccount.objects.filter(stripe_id=stripe_id, is_platform=False).first()


def locked_balance(account: SandboxAccount, currency: str) -> SandboxBalance:
    """The (account, currency) balance row, created at 0 if new, locked until the transaction ends."""
    row, _ = SandboxBalance.objects.get_or_create(account=account, currency=currency)
    return SandboxBalance.objects.select_for_update().get(pk=row.pk)


def adjust(account: SandboxAccount, currency: str, delta: int) -> None:
    row, _ = SandboxBalance.objects.get_or_create(account=account, currency=currency)
    SandboxBalance.objects.filter(pk=row.pk).update(available=F("available") + delta)


def available(account: SandboxAccount, currency: str) -> int:
    row = SandboxBalance.objects.filter(account=account, currency=currency).first()
    return row.available if row else 0


# Stripe's balance transaction `type` and `reporting_category` per movement of the platform's balance.
CHARGE = ("charge", "charge")
REFUND = ("refund", "refund")
REFUND_FAILURE = ("refund_failure", "refund_failure")
TRANSFER = ("transfer", "transfer")
TRANSFER_REVERSAL = ("transfer_refund", "transfer_reversal")


def post(kind: tuple[str, str], currency: str, amount: int, *, source: str, at, description: str = "") -> str:
    """Move the platform's balance by `amount` and record the balance transaction. Returns its `txn_` id."""
    account = platform_account()
    adjust(account, currency, amount)
    txn_type, category = kind
    return SandboxBalanceTransaction.objects.create(
        stripe_id=new_id("txn"),
        account=account,
        amount=amount,
        currency=currency,
        type=txn_type,
        reporting_category=category,
        source=source,
        description=description,
        created=at,
    ).stripe_id

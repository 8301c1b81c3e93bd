"""Accounts and their available balances. Callers run inside `transaction.atomic()`.

Lock order everywhere (no deadlocks between endpoints): transfer row, payment intent row, connected
account balance, platform balance.
"""

from django.db.models import F

from .ids import PLATFORM_ACCOUNT_ID
from .models import SandboxAccount, SandboxBalance


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

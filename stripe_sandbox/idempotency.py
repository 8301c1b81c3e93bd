"""Stripe's idempotency layer for POSTs, backed by a unique (account, key) row.

A key is claimed (row inserted, state "executing") in its own short transaction before the endpoint
runs, so a concurrent request with the same key sees it and gets 409 `idempotency_key_in_use`. The
endpoint's effect and the stored response commit together. Same key + same request replays the
stored status and body; same key + anything else is a 400 `idempotency_error`.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .errors import key_in_use, key_reused
from .models import SandboxIdempotencyKey

# A key left "executing" this long belonged to a process that died mid-request (its transaction
# rolled back, so nothing happened); the next request with the key runs as new. Override with
# settings.STRIPE_SANDBOX_ABANDONED_KEY_SECONDS; it must exceed any injected stall.
DEFAULT_ABANDONED_AFTER_SECONDS = 30


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str


def _abandoned_cutoff():
    seconds = getattr(settings, "STRIPE_SANDBOX_ABANDONED_KEY_SECONDS", DEFAULT_ABANDONED_AFTER_SECONDS)
    return timezone.now() - timedelta(seconds=seconds)


def existing(scope: str, key: str) -> SandboxIdempotencyKey | None:
    row = SandboxIdempotencyKey.objects.filter(account_scope=scope, key=key).first()
    if row is not None and row.state == SandboxIdempotencyKey.State.EXECUTING and row.updated < _abandoned_cutoff():
        SandboxIdempotencyKey.objects.filter(
            pk=row.pk, state=SandboxIdempotencyKey.State.EXECUTING, updated=row.updated
        ).delete()
        row = SandboxIdempotencyKey.objects.filter(account_scope=scope, key=key).first()
    return row


def verdict(row: SandboxIdempotencyKey, fingerprint: str) -> StoredResponse:
    """What a request with an already used key gets: the replay, or a 400/409 (raised)."""
    if row.fingerprint != fingerprint:
        raise key_reused(row.key)
    if row.state == SandboxIdempotencyKey.State.EXECUTING:
        raise key_in_use(row.key)
    return StoredResponse(row.response_status, row.response_body)


def claim(scope: str, key: str, *, method: str, path: str, fingerprint: str) -> SandboxIdempotencyKey | None:
    """Insert the key as executing; None when another request holds it (the unique constraint says so)."""
    try:
        with transaction.atomic():
            return SandboxIdempotencyKey.objects.create(
                account_scope=scope, key=key, method=method, path=path, fingerprint=fingerprint
            )
    except IntegrityError:
        return None


def store(row: SandboxIdempotencyKey, status: int, body: str) -> None:
    SandboxIdempotencyKey.objects.filter(pk=row.pk).update(
        state=SandboxIdempotencyKey.State.DONE, response_status=status, response_body=body, updated=timezone.now()
    )


def release(row: SandboxIdempotencyKey) -> None:
    """Free a claimed key whose request ended in an answer Stripe does not store."""
    SandboxIdempotencyKey.objects.filter(pk=row.pk, state=SandboxIdempotencyKey.State.EXECUTING).delete()


def forget_all() -> int:
    """Stripe prunes keys after 24 hours; this prunes them now. Returns how many were forgotten."""
    deleted, _ = SandboxIdempotencyKey.objects.all().delete()
    return deleted

"""The sandbox clock: real time unless a test (or a developer, through the ledger) set or advanced it.

Only the refund lifecycle, events, disputes and balance transactions read it: scheduled refund
transitions fall due when this clock reaches them, so a test advances the clock instead of sleeping.
"""

from datetime import datetime, timedelta

from django.utils import timezone

from .models import SandboxClock


def now() -> datetime:
    row = SandboxClock.objects.first()
    if row is None:
        return timezone.now()
    if row.frozen_at is not None:
        return row.frozen_at
    return timezone.now() + timedelta(seconds=row.offset_seconds)


def freeze(at: datetime) -> None:
    """Stop the clock at `at` (it stays there until advanced or reset)."""
    SandboxClock.objects.all().delete()
    SandboxClock.objects.create(frozen_at=at)


def advance(seconds: float) -> datetime:
    """Move the clock forward (a frozen clock stays frozen at the later time). Returns the new now."""
    row = SandboxClock.objects.first() or SandboxClock.objects.create()
    if row.frozen_at is not None:
        row.frozen_at += timedelta(seconds=seconds)
    else:
        row.offset_seconds += seconds
    row.save()
    return now()


def reset() -> None:
    """Back to real time."""
    SandboxClock.objects.all().delete()

"""Findings: differences between our books and Stripe's that an operator must look at.

The nightly reconciliation (refunds.reconciliation) and Stripe's own events (stripe_events) open
them; an operator resolves them with a note. `finding_open` is idempotent on the difference's key.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from refunds.models import Bag, ReconciliationFinding, Refund
from violet_refunds.exceptions import InvalidTransition, ValidationFailed


def finding_open(
    *,
    key: str,
    origin: str,
    kind: str,
    detail: str,
    refund: Refund | None = None,
    bag: Bag | None = None,
    step: str = "",
) -> tuple[ReconciliationFinding, bool]:
    """(finding, created): the finding for this difference, opened the first time it is seen. Seen
    again (open or resolved), it is not opened twice: only `times_seen` and `last_seen_at` move."""
    now = timezone.now()
    if bag is None and refund is not None:
        bag = refund.bag
    with transaction.atomic():
        finding, created = ReconciliationFinding.objects.get_or_create(
            key=key[:255],
            defaults={
                "origin": origin,
                "kind": kind,
                "detail": detail,
                "refund": refund,
                "bag": bag,
                "step": step,
                "last_seen_at": now,
            },
        )
        if not created:
            ReconciliationFinding.objects.filter(pk=finding.pk).update(
                times_seen=F("times_seen") + 1, last_seen_at=now, date_last_modified=now
            )
    return finding, created


def finding_resolve(*, finding: ReconciliationFinding, user=None, note: str) -> ReconciliationFinding:
    """An operator dealt with the difference and says how."""
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("Say how the difference was dealt with.", field_errors={"note": ["A note is required."]})
    now = timezone.now()
    updated = ReconciliationFinding.objects.filter(pk=finding.pk, state=ReconciliationFinding.State.OPEN).update(
        state=ReconciliationFinding.State.RESOLVED,
        date_resolved=now,
        resolved_by=user,
        resolution_note=note,
        date_last_modified=now,
    )
    if not updated:
        raise InvalidTransition("This finding is already resolved.")
    finding.refresh_from_db()
    return finding

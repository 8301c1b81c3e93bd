"""Findings: differences between our books and Stripe's that an operator must look at.

The nightly reconciliation (refunds.reconciliation) and Stripe's own events (stripe_events) open
them; an operator resolves them with a note. `finding_open` is idempotent on the difference's key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from refunds.models import Bag, ReconciliationFinding, Refund, RefundStep
from refunds.reconciliation import Difference, ReconciliationReport, refunds_reconcile
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


@dataclass(frozen=True)
class FindingsReport:
    report: ReconciliationReport
    opened: int  # findings opened by this run
    seen_again: int  # differences already open (or resolved) from an earlier run or a Stripe event


def difference_key(difference: Difference) -> str:
    """What identifies a difference from one run to the next. A Stripe object made outside the
    product is keyed as the Stripe event handlers key it (refunds.services.stripe_changes), so an
    event and the nightly run never open two findings for one Dashboard refund or reversal."""
    if difference.kind == "outside_engine" and difference.stripe_id:
        what = "refund" if difference.stripe_id.startswith(("re_", "pyr_")) else "reversal"
        return f"stripe-outside-{what}:{difference.stripe_id}"
    text = f"{difference.kind}|{difference.refund_id}|{difference.step}|{difference.detail}"
    return f"reconcile:{difference.kind}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def findings_from_reconciliation(*, since_days: int | None = None, gateway=None) -> FindingsReport:
    """Beat's nightly reconciliation: compare the refunds of the last RECONCILIATION_DAYS days with
    Stripe and open one finding per difference (never twice for the same one). Raises
    StripeUnavailable when Stripe cannot be read: nothing is concluded, nothing opened."""
    days = settings.RECONCILIATION_DAYS if since_days is None else since_days
    report = refunds_reconcile(since_days=days, gateway=gateway)
    named = {d.refund_id for d in report.differences if d.refund_id is not None}
    refunds = {r.pk: r for r in Refund.objects.filter(pk__in=named).select_related("bag")}
    opened = seen_again = 0
    for difference in report.differences:
        refund = refunds.get(difference.refund_id) if difference.refund_id is not None else None
        _finding, created = finding_open(
            key=difference_key(difference),
            origin=ReconciliationFinding.Origin.RECONCILIATION,
            kind=difference.kind,
            detail=difference.detail
            if refund is not None or difference.refund_id is None
            else f"refund {difference.refund_id}: {difference.detail}",
            refund=refund,
            step=difference.step if difference.step in RefundStep.values else "",
        )
        opened += created
        seen_again += not created
    return FindingsReport(report=report, opened=opened, seen_again=seen_again)

"""How long personal data stays (issue #22 item 1). Settings (violet_refunds/settings.py, README):

- RETENTION_INBOUND_EVENT_DAYS (30): raw inbound bodies and headers are redacted; the event keeps
  its id, platform, topic, status, outcome, body hash and links to refunds. Events that may still be
  processed (RECEIVED, RETRYING, AWAITING_ORDER, FAILED) are kept whole until they settle.
- RETENTION_OUTBOUND_DAYS (30): outbound event bodies (once no delivery of the event is waiting)
  and the channel's reply excerpts are cleared.
- RETENTION_LOGIN_LOG_DAYS (90): django-axes login records (attempts, logins, failures) are deleted.
- RETENTION_PRIVACY_EXPORT_DAYS (30): a data request's assembled export is cleared after this.
- Expired sessions are deleted (Django's clearsessions).

Orders, bags, refunds, transfers and the refund audit trail are never deleted: they are financial
records. Each step works in batches of RETENTION_BATCH_SIZE rows and only touches rows not done yet,
so a run can stop anywhere and the next one goes on (idempotent). `dry_run` counts without writing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db.models import Exists, OuterRef
from django.utils import timezone

from notifications.models import UNFINISHED_DELIVERY_STATUSES, WebhookDelivery, WebhookEvent
from platforms.models import InboundEvent, PrivacyRequest
from platforms.privacy.ingest import STATUSES_NEEDING_BODY, redacted_fields


@dataclass
class RetentionResult:
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        return f"Retention {verb}: " + ", ".join(f"{name} {count}" for name, count in self.counts.items()) + "."


def _days(name: str) -> timedelta:
    return timedelta(days=int(getattr(settings, name)))


def _batched_update(queryset, values: dict | Callable[[], dict], *, batch_size: int, dry_run: bool) -> int:
    """Update the rows of `queryset` (which must stop matching once updated) batch by batch."""
    if dry_run:
        return queryset.count()
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        total += queryset.model.objects.filter(pk__in=ids).update(**(values() if callable(values) else values))


def _batched_delete(queryset, *, batch_size: int, dry_run: bool) -> int:
    if dry_run:
        return queryset.count()
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        total += queryset.model.objects.filter(pk__in=ids).delete()[0]


def retention_apply(
    *, now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None
) -> RetentionResult:
    now = now or timezone.now()
    batch = batch_size or settings.RETENTION_BATCH_SIZE
    result = RetentionResult(dry_run=dry_run)
    counts = result.counts

    inbound = (
        InboundEvent.objects.filter(
            date_created__lt=now - _days("RETENTION_INBOUND_EVENT_DAYS"), redacted_at__isnull=True
        )
        .exclude(status__in=STATUSES_NEEDING_BODY)
        .order_by()
    )
    counts["inbound events redacted"] = _batched_update(inbound, redacted_fields, batch_size=batch, dry_run=dry_run)

    outbound_cutoff = now - _days("RETENTION_OUTBOUND_DAYS")
    waiting = WebhookDelivery.objects.filter(event=OuterRef("pk"), status__in=UNFINISHED_DELIVERY_STATUSES)
    outbound = (
        WebhookEvent.objects.filter(date_created__lt=outbound_cutoff)
        .exclude(body="")
        .filter(~Exists(waiting))
        .order_by()
    )
    counts["outbound event bodies cleared"] = _batched_update(outbound, {"body": ""}, batch_size=batch, dry_run=dry_run)
    replies = WebhookDelivery.objects.filter(date_last_modified__lt=outbound_cutoff).exclude(last_reply_excerpt="")
    counts["delivery replies cleared"] = _batched_update(
        replies.order_by(), {"last_reply_excerpt": ""}, batch_size=batch, dry_run=dry_run
    )

    login_cutoff = now - _days("RETENTION_LOGIN_LOG_DAYS")
    for label, model in (
        ("login attempts deleted", AccessAttempt),
        ("login records deleted", AccessLog),
        ("login failures deleted", AccessFailureLog),
    ):
        counts[label] = _batched_delete(
            model.objects.filter(attempt_time__lt=login_cutoff).order_by(), batch_size=batch, dry_run=dry_run
        )
    counts["expired sessions deleted"] = _batched_delete(
        Session.objects.filter(expire_date__lt=now).order_by(), batch_size=batch, dry_run=dry_run
    )
    exports = PrivacyRequest.objects.filter(
        completed_at__lt=now - _days("RETENTION_PRIVACY_EXPORT_DAYS"), export__isnull=False
    ).order_by()
    counts["data request exports cleared"] = _batched_update(
        exports, {"export": None}, batch_size=batch, dry_run=dry_run
    )
    return result

"""Refund discovery in merchants' order management systems (issue #25), run by beat per org.

Each run reads the refund documents changed since the org's cursor (less OVERLAP: clock skew
between us and the OMS; what is read twice is deduplicated), at most OMS_MAX_REFUNDS_PER_RUN of
them; a full batch moves the cursor to the last one read and the next run goes on from there (a
new org, or one behind after an outage, catches up run by run). Every refund becomes an
InboundEvent (one per refund document and store: a second sighting stores nothing) on the
merchant's StoreConnection and is processed like every platform event: AWAITING_ORDER while its
order is not a bag yet, retries on transient errors, replay from the admin.

The org's API limits (403 REQUEST_LIMIT_EXCEEDED, or usage at OMS_API_USAGE_MAX_PERCENT) stop the
run and leave the org alone for OMS_LIMIT_BACKOFF_SECONDS. A failed run keeps the cursor and
records the error; `last_success_at` is the last run that read up to its end.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from platforms.adapters.base import WebhookEnvelope
from platforms.clients.base import PlatformClientError
from platforms.models import OmsConnection, SfccRefundMode, StoreConnection
from platforms.oms import get_oms_adapter
from platforms.oms.base import OMS_TOPIC, OmsLimitReached
from platforms.services import event_ingest

logger = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=2)


@dataclass(frozen=True)
class DiscoveryRun:
    oms_connection_id: int
    refunds_seen: int = 0
    events_created: int = 0
    error: str = ""
    backed_off: bool = False


def oms_connections_to_discover(now: datetime):
    """Connected orgs of merchants in the OMS mode that are not backing off."""
    return (
        OmsConnection.objects.select_related("merchant")
        .filter(
            status=OmsConnection.Status.CONNECTED,
            merchant__sfcc_refund_mode=SfccRefundMode.ORDER_MANAGEMENT,
        )
        .filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))
        .order_by("pk")
    )


def oms_refunds_discover(*, now: datetime | None = None, session=None) -> list[DiscoveryRun]:
    """Beat: one run per org; one org's failure stops nothing."""
    now = now or timezone.now()
    return [oms_connection_discover(oms, now=now, session=session) for oms in oms_connections_to_discover(now)]


def oms_event_id(connection: StoreConnection, external_id: str) -> str:
    return f"{connection.public_id}:oms:{external_id}"


def oms_connection_discover(oms: OmsConnection, *, now: datetime, session=None) -> DiscoveryRun:
    adapter = get_oms_adapter(oms.system)
    if adapter is None:
        return _record(oms, now, error=f"No adapter for the order management system {oms.system}.")
    since = oms.cursor - OVERLAP if oms.cursor else now - timedelta(seconds=settings.OMS_FIRST_LOOKBACK_SECONDS)
    try:
        discovery = adapter.refunds_discover(
            oms, since=since, until=now, limit=settings.OMS_MAX_REFUNDS_PER_RUN, session=session
        )
    except OmsLimitReached as exc:
        logger.warning("OMS discovery of %s backs off: %s", oms, exc.message)
        return _record(oms, now, error=exc.message, backoff=True)
    except PlatformClientError as exc:
        logger.warning("OMS discovery of %s failed: %s", oms, exc.message)
        return _record(oms, now, error=exc.message)
    connection, _ = StoreConnection.objects.get_or_create(
        merchant=oms.merchant, defaults={"status": StoreConnection.Status.CONNECTED}
    )
    created = 0
    for refund in discovery.refunds:
        envelope = WebhookEnvelope(
            event_id=oms_event_id(connection, refund.external_id), topic=OMS_TOPIC, order_id=refund.order_number
        )
        body = json.dumps(refund.body, default=str, sort_keys=True)
        created += int(event_ingest(connection=connection, envelope=envelope, body=body, headers={}).created)
    error = "Stopped near the org's API limits; backing off." if discovery.limit_reached else discovery.error
    return _record(
        oms,
        now,
        cursor=discovery.read_until,
        success=discovery.complete,
        error=error if not discovery.complete else "",
        backoff=discovery.limit_reached,
        api_usage=discovery.api_usage,
        refunds_seen=len(discovery.refunds),
        events_created=created,
    )


def _record(
    oms: OmsConnection,
    now: datetime,
    *,
    cursor: datetime | None = None,
    success: bool = False,
    error: str = "",
    backoff: bool = False,
    api_usage: str = "",
    refunds_seen: int = 0,
    events_created: int = 0,
) -> DiscoveryRun:
    oms.last_run_at = now
    oms.last_error = error[:2000]
    fields = ["last_run_at", "last_error", "date_last_modified"]
    if cursor is not None:
        oms.cursor = cursor
        fields.append("cursor")
    if success:
        oms.last_success_at = now
        fields.append("last_success_at")
    oms.backoff_until = now + timedelta(seconds=settings.OMS_LIMIT_BACKOFF_SECONDS) if backoff else None
    fields.append("backoff_until")
    if api_usage:
        oms.api_usage = api_usage
        fields.append("api_usage")
    oms.save(update_fields=fields)
    return DiscoveryRun(
        oms_connection_id=oms.pk,
        refunds_seen=refunds_seen,
        events_created=events_created,
        error=error,
        backed_off=backoff,
    )

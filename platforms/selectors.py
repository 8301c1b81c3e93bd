"""Reads for the platforms app: connections, the bag a platform order belongs to, events to replay."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from platforms.models import (
    InboundEvent,
    Merchant,
    Platform,
    PrivacyRequest,
    SfccRefundMode,
    StoreConnection,
    WebhookSubscription,
)
from refunds.models import Bag, BagStatus, OrderSku, Refund
from violet_refunds import retrying

# Webhook deliveries for one store arrive in bursts; reading (and decrypting) its connection for each
# one was a third of the receiver's time (bench/README.md). A short per-process cache is safe because
# the receiver re-reads the connection before rejecting a signature (see platforms/views.py), so a
# rotated secret works at once; a disconnected store is still accepted for at most this long, and
# its events are then processed against the live row anyway.
WEBHOOK_CONNECTION_CACHE_SECONDS = 30.0
_WEBHOOK_CONNECTION_CACHE_MAX = 2048
_webhook_connections: dict[uuid.UUID, tuple[float, StoreConnection]] = {}


def connection_for_webhook(public_id: str, *, fresh: bool = False) -> StoreConnection | None:
    """The store connection a webhook URL names; None for a malformed or unknown id. `fresh=True`
    skips the per-process cache (used before refusing a signature, so a new secret is seen at once)."""
    try:
        parsed = uuid.UUID(str(public_id))
    except ValueError:
        return None
    now = time.monotonic()
    if not fresh:
        cached = _webhook_connections.get(parsed)
        if cached and cached[0] > now:
            return cached[1]
    # The platform credentials are not needed to verify a delivery: leave them encrypted.
    connection = (
        StoreConnection.objects.select_related("merchant").defer("credentials").filter(public_id=parsed).first()
    )
    if connection is None:
        _webhook_connections.pop(parsed, None)
        return None
    if len(_webhook_connections) >= _WEBHOOK_CONNECTION_CACHE_MAX:
        _webhook_connections.clear()
    _webhook_connections[parsed] = (now + WEBHOOK_CONNECTION_CACHE_SECONDS, connection)
    return connection


def webhook_connection_cache_clear() -> None:
    _webhook_connections.clear()


def connections_for_platform_store(platform: str, store_id: str) -> list[StoreConnection]:
    """App-level webhooks (/webhooks/ecwid/, /webhooks/wix/): the connections of `platform` whose
    platform store id (Ecwid store id, Wix app instance id) is `store_id`. One is a route; none or
    two (a store connected twice) are not, and the caller says which. At most 2 are read."""
    store_id = str(store_id or "").strip().lower()
    if not store_id:
        return []
    return list(
        StoreConnection.objects.select_related("merchant")
        .defer("credentials")
        .filter(external_store_id=store_id, merchant__platform=platform)
        .order_by("pk")[:2]
    )


def bag_for_platform_order(merchant: Merchant, order_ids: Iterable[str]) -> Bag | None:
    """The merchant's bag whose platform order id is one of `order_ids` (first spelling wins)."""
    ids = [str(order_id) for order_id in order_ids if order_id]
    if not ids:
        return None
    bags = {bag.external_id: bag for bag in Bag.objects.filter(merchant=merchant, external_id__in=ids)}
    return next((bags[order_id] for order_id in ids if order_id in bags), None)


def bag_skus_by_external_id(bag: Bag) -> dict[str, OrderSku]:
    return {sku.external_id: sku for sku in OrderSku.objects.filter(bag=bag) if sku.external_id}


def refund_by_external_id(bag: Bag, external_id: str) -> Refund | None:
    return Refund.objects.filter(bag=bag, external_id=external_id).first()


def inbound_event_for_processing(event_id: int) -> InboundEvent | None:
    return InboundEvent.objects.select_related("connection__merchant").filter(pk=event_id).first()


def events_for_replay(*, failed: bool = False, ids: Sequence[int] = ()) -> QuerySet[InboundEvent]:
    """FAILED and AWAITING_ORDER events (they wait for an operator or for their order; RETRYING ones
    retry on their own and are not included), or the given ids whatever their status; oldest first.
    Exactly one of the two selects."""
    if failed == bool(ids):
        raise ValueError("Choose either failed=True or a list of ids.")
    queryset = InboundEvent.objects.select_related("connection__merchant").order_by("date_created", "pk")
    if failed:
        return queryset.filter(status__in=(InboundEvent.Status.FAILED, InboundEvent.Status.AWAITING_ORDER))
    return queryset.filter(pk__in=list(ids))


def events_to_requeue(*, cutoff: datetime) -> QuerySet[InboundEvent]:
    """Events whose processing message was lost (violet_refunds.retrying.events_lost)."""
    return retrying.events_lost(InboundEvent.objects.all(), cutoff=cutoff)


def _bag_of_awaited_order():
    return Bag.objects.filter(merchant_id=OuterRef("connection__merchant_id"), external_id=OuterRef("order_id"))


def events_awaiting_with_bag(*, requeued_before: datetime) -> QuerySet[InboundEvent]:
    """AWAITING_ORDER events whose order is now a bag of their merchant, not re-enqueued since
    `requeued_before`; oldest first."""
    return (
        InboundEvent.objects.filter(status=InboundEvent.Status.AWAITING_ORDER)
        .filter(Exists(_bag_of_awaited_order()))
        .filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=requeued_before))
        .order_by("date_created", "pk")
    )


def events_awaiting_expired(*, cutoff: datetime) -> QuerySet[InboundEvent]:
    """AWAITING_ORDER since before `cutoff` and still without a bag; oldest first."""
    return (
        InboundEvent.objects.filter(status=InboundEvent.Status.AWAITING_ORDER, awaiting_since__lt=cutoff)
        .exclude(Exists(_bag_of_awaited_order()))
        .order_by("awaiting_since", "pk")
    )


def events_awaiting_order(*, merchant_id: int, order_id: str) -> QuerySet[InboundEvent]:
    return (
        InboundEvent.objects.select_related("connection__merchant")
        .filter(status=InboundEvent.Status.AWAITING_ORDER, connection__merchant_id=merchant_id, order_id=order_id)
        .order_by("date_created", "pk")
    )


def events_awaiting_order_exist(*, merchant_id: int, order_id: str) -> bool:
    return InboundEvent.objects.filter(
        status=InboundEvent.Status.AWAITING_ORDER, connection__merchant_id=merchant_id, order_id=order_id
    ).exists()


def events_awaiting_count() -> int:
    return InboundEvent.objects.filter(status=InboundEvent.Status.AWAITING_ORDER).count()


def events_retrying_count() -> int:
    return InboundEvent.objects.filter(status=InboundEvent.Status.RETRYING).count()


def bags_for_parity_check(
    *,
    platforms: Sequence[str],
    recent_since: datetime,
    recent_checked_before: datetime,
    slow_checked_before: datetime,
    limit: int,
    first_merchant_ids: Sequence[int] = (),
) -> list[Bag]:
    """Bags whose platform order the parity check reads now: recently created or changed ones whose
    last check is older than `recent_checked_before`, then open ones not checked since
    `slow_checked_before`; never checked first, then the longest unchecked. Only bags with a
    platform order id, of a CONNECTED store of one of `platforms`, never SFCC Option 2. Within each
    group, bags of `first_merchant_ids` (silent stores, issue #24) come first."""
    first = Case(When(merchant_id__in=list(first_merchant_ids), then=Value(0)), default=Value(1))
    base = (
        Bag.objects.select_related("merchant__connection")
        .filter(
            external_id__isnull=False,
            merchant__platform__in=list(platforms),
            merchant__connection__status=StoreConnection.Status.CONNECTED,
        )
        .exclude(external_id="")
        .exclude(merchant__sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE)
        .exclude(status__in=(BagStatus.REFUNDED, BagStatus.REJECTED))
        .order_by(first, F("date_last_consolidated").asc(nulls_first=True), "pk")
    )
    recent = list(
        base.filter(Q(date_created__gte=recent_since) | Q(date_last_modified__gte=recent_since)).filter(
            Q(date_last_consolidated__isnull=True) | Q(date_last_consolidated__lt=recent_checked_before)
        )[:limit]
    )
    if len(recent) >= limit:
        return recent
    slow = (
        base.exclude(status=BagStatus.CANCELED)
        .exclude(pk__in=[bag.pk for bag in recent])
        .filter(Q(date_last_consolidated__isnull=True) | Q(date_last_consolidated__lt=slow_checked_before))
    )
    return recent + list(slow[: limit - len(recent)])


def sfcc_connections_to_poll() -> QuerySet[StoreConnection]:
    """SFCC Option 1 merchants only: Option 2 (manual notice) stores are never polled."""
    return StoreConnection.objects.select_related("merchant").filter(
        merchant__platform=Platform.SFCC,
        merchant__sfcc_refund_mode=SfccRefundMode.CANCEL_AS_REFUND,
        status=StoreConnection.Status.CONNECTED,
    )


# --------------------------------------------------------------------------------------------------
# Store health (issue #24): broken subscriptions, silent stores
# --------------------------------------------------------------------------------------------------


def _webhook_platforms() -> list[str]:
    # Imported here: the adapters import this module.
    from platforms.adapters import ADAPTERS

    return [platform for platform, adapter in ADAPTERS.items() if adapter.receives_webhooks]


def connections_broken() -> QuerySet[StoreConnection]:
    """Connections an operator must look at now: credentials refused (INVALID), or a connected
    store with a webhook subscription whose last sync failed."""
    failing = WebhookSubscription.objects.filter(connection=OuterRef("pk"), state=WebhookSubscription.State.ERROR)
    return StoreConnection.objects.filter(
        Q(status=StoreConnection.Status.INVALID) | (Q(status=StoreConnection.Status.CONNECTED) & Exists(failing))
    )


def connections_silent(*, now: datetime, silent_after: timedelta, min_bags: int) -> QuerySet[StoreConnection]:
    """Connected webhook stores from which nothing arrived for `silent_after` (counting from the
    connection's creation when nothing ever did) although the network placed at least `min_bags`
    bags with them in that time: their subscriptions are probably gone."""
    since = now - silent_after
    recent_bags = (
        Bag.objects.filter(merchant_id=OuterRef("merchant_id"), date_created__gte=since)
        .order_by()
        .values("merchant_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        StoreConnection.objects.filter(
            status=StoreConnection.Status.CONNECTED, merchant__platform__in=_webhook_platforms()
        )
        .filter(Q(last_event_at__lt=since) | Q(last_event_at__isnull=True, date_created__lt=since))
        .annotate(recent_bags=Coalesce(Subquery(recent_bags, output_field=IntegerField()), Value(0)))
        .filter(recent_bags__gte=max(min_bags, 1))
    )


def connections_needing_attention(
    *, now: datetime, silent_after: timedelta, min_bags: int
) -> QuerySet[StoreConnection]:
    """Broken or silent connections (the admin triage card and its filtered list)."""
    silent = connections_silent(now=now, silent_after=silent_after, min_bags=min_bags)
    return StoreConnection.objects.filter(Q(pk__in=connections_broken().values("pk")) | Q(pk__in=silent.values("pk")))


def privacy_data_requests_for_merchants(merchant_ids: Iterable[int]) -> QuerySet[PrivacyRequest]:
    """Customer data requests of these merchants (the portal's Privacy requests page), newest first."""
    return PrivacyRequest.objects.filter(
        merchant_id__in=list(merchant_ids), kind=PrivacyRequest.Kind.CUSTOMER_DATA_REQUEST
    ).order_by("-date_created")

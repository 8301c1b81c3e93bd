"""Keep a store's webhook subscriptions as its adapter declares them (issue #24).

`subscriptions_sync(connection)` lists what the platform holds, creates what is missing, corrects a
wrong address, a rotated secret or a paused/disabled/inactive state, deletes duplicates and topics no
longer declared, and records each declared topic in WebhookSubscription (platform id, address,
state, last verified, last error). Idempotent: a second run makes no write call.

Ours, and only ours, are touched: a platform subscription is the product's when its id is one we
recorded, or when it delivers to this connection's own webhook path (/webhooks/<platform>/<public
id>/, on any host: an earlier PLATFORM_WEBHOOK_BASE_URL). Anything else the store holds (another
app's, the merchant's own) is left alone.

A 401/403 marks the connection INVALID (once), e-mails the merchant's portal users, and shows in
the admin triage ("Store connections needing attention"). App-level platforms (Ecwid, Wix) record
their topics as APP_LEVEL: configured once for the app, nothing to call per store. SFCC is polled.

Runs: when a store is connected (admin, portal), when its webhook secret or credentials are
replaced (`subscriptions_sync_later`), from the admin action "Sync subscriptions", and from beat for
every store once per SUBSCRIPTIONS_SYNC_EVERY_SECONDS (`subscriptions_sync_due`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from platforms import tasks
from platforms.adapters import ADAPTERS, get_adapter
from platforms.adapters.base import NO_WEBHOOKS, Delivery, SubscriptionPlan
from platforms.clients.base import PlatformAuthenticationFailed, PlatformClientError, PlatformUnavailable
from platforms.models import Platform, StoreConnection, WebhookSubscription
from platforms.subscriptions.base import Registrar, RemoteSubscription
from platforms.subscriptions.bigcommerce import BigCommerceSubscriptions
from platforms.subscriptions.shopify import ShopifySubscriptions
from platforms.subscriptions.woocommerce import WooCommerceSubscriptions
from violet_refunds.locks import try_exclusive

logger = logging.getLogger(__name__)

# The registrar of each platform whose adapter declares per-connection subscriptions.
REGISTRARS: dict[str, Callable[[StoreConnection], Registrar]] = {
    Platform.SHOPIFY: ShopifySubscriptions.from_connection,
    Platform.BIGCOMMERCE: BigCommerceSubscriptions.from_connection,
    Platform.WOOCOMMERCE: WooCommerceSubscriptions.from_connection,
}

State = WebhookSubscription.State


@dataclass
class SyncResult:
    connection_id: int
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str = ""
    authentication_failed: bool = False
    # The platform could not be reached: the store is left due for beat's next run.
    retry_soon: bool = False

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deleted)

    def summary(self) -> str:
        if self.skipped:
            return self.skipped
        parts = [
            f"{label}: {', '.join(items)}"
            for label, items in (
                ("created", self.created),
                ("corrected", self.updated),
                ("deleted", self.deleted),
                ("verified", self.verified),
            )
            if items
        ]
        parts += [f"error on {topic}: {message}" for topic, message in self.errors.items()]
        return "; ".join(parts) or "nothing to do"


def subscription_plan(platform: str) -> SubscriptionPlan:
    adapter = get_adapter(platform)
    return adapter.subscriptions if adapter is not None else NO_WEBHOOKS


def webhook_path(connection: StoreConnection) -> str:
    return reverse(
        "platforms:webhook",
        kwargs={"platform": connection.merchant.platform.lower(), "public_id": str(connection.public_id)},
    )


def webhook_address(connection: StoreConnection) -> str:
    """The absolute URL the platform delivers this store's webhooks to ("" without a base URL)."""
    base = settings.PLATFORM_WEBHOOK_BASE_URL.strip().rstrip("/")
    return f"{base}{webhook_path(connection)}" if base else ""


def secret_fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest() if secret else ""


def _same_path(address: str, path: str) -> bool:
    return urlsplit(address).path.rstrip("/") == path.rstrip("/")


# --------------------------------------------------------------------------------------------------
# The sync
# --------------------------------------------------------------------------------------------------


def subscriptions_sync(connection: StoreConnection, *, now: datetime | None = None) -> SyncResult:
    """Make the store's subscriptions what its adapter declares (see the module docstring)."""
    now = now or timezone.now()
    result = SyncResult(connection_id=connection.pk)
    plan = subscription_plan(connection.merchant.platform)
    if plan.delivery == Delivery.NONE:
        result.skipped = "No webhooks on this platform (its orders are polled)."
        return result
    if connection.status == StoreConnection.Status.DISCONNECTED:
        result.skipped = "The store is disconnected."
        return result
    if plan.delivery == Delivery.APP_LEVEL:
        _record_app_level(connection, plan, now)
        result.skipped = "App-level webhooks: configured once in the app's settings (see the README)."
    else:
        with try_exclusive("store_connection", connection.pk) as acquired:
            if not acquired:
                result.skipped = "Another sync of this store is running."
                return result
            _sync_per_connection(connection, plan, result, now)
    if not result.retry_soon:
        StoreConnection.objects.filter(pk=connection.pk).update(subscriptions_synced_at=now)
        connection.subscriptions_synced_at = now
    if result.writes or result.errors:
        logger.info("Subscriptions of connection %s: %s", connection.pk, result.summary())
    return result


def _sync_per_connection(connection: StoreConnection, plan: SubscriptionPlan, result: SyncResult, now) -> None:
    address = webhook_address(connection)
    if not address:
        _record_errors(
            connection, plan.topics, "PLATFORM_WEBHOOK_BASE_URL is not set: no address to register.", result, now
        )
        return
    try:
        registrar = REGISTRARS[connection.merchant.platform](connection)
        secret = (connection.webhook_secret or "") if registrar.carries_secret else ""
        if registrar.carries_secret and not secret:
            _record_errors(connection, plan.topics, "The connection has no webhook secret to register.", result, now)
            return
        remote = registrar.subscriptions_list()
        _reconcile(connection, plan, registrar, remote, address=address, secret=secret, result=result, now=now)
    except PlatformAuthenticationFailed as exc:
        result.authentication_failed = True
        _record_errors(connection, plan.topics, exc.message, result, now)
        store_connection_invalidate(connection, reason=f"Webhook subscriptions: {exc.message}", now=now)
    except PlatformUnavailable as exc:
        # Timeout, 5xx, 429 while listing: nothing is known to be wrong with the subscriptions, so
        # their state stays; the store stays due and beat's next run tries again.
        result.retry_soon = True
        for topic in plan.topics:
            result.errors[topic] = exc.message
        WebhookSubscription.objects.filter(connection=connection, topic__in=plan.topics).update(
            last_error=f"Last sync could not reach the platform: {exc.message}"[:2000]
        )
    except PlatformClientError as exc:
        # The platform refused the listing or answered nonsense, or a credential is missing.
        _record_errors(connection, plan.topics, exc.message, result, now)


def _reconcile(
    connection: StoreConnection,
    plan: SubscriptionPlan,
    registrar: Registrar,
    remote: list[RemoteSubscription],
    *,
    address: str,
    secret: str,
    result: SyncResult,
    now: datetime,
) -> None:
    rows = {row.topic: row for row in connection.subscriptions.all()}
    recorded_ids = {row.platform_id for row in rows.values() if row.platform_id}
    path = webhook_path(connection)
    ours = [r for r in remote if r.platform_id in recorded_ids or _same_path(r.address, path)]
    fingerprint = secret_fingerprint(secret)
    handled: set[str] = set()
    for topic in plan.topics:
        row = rows.get(topic)
        recorded_id = row.platform_id if row else ""
        candidates = sorted(
            (r for r in ours if registrar.topic_matches(r, topic)),
            # The one we recorded, else one already right, else an active one: kept; others are duplicates.
            key=lambda r: (r.platform_id != recorded_id, r.address != address, not r.active),
        )
        handled.update(r.platform_id for r in candidates)
        try:
            kept = _subscription_ensure(
                registrar, candidates[0] if candidates else None, row, topic, address, secret, fingerprint, result
            )
            for duplicate in candidates[1:]:
                registrar.subscription_delete(duplicate)
                result.deleted.append(f"{topic} (duplicate {duplicate.platform_id})")
        except PlatformAuthenticationFailed:
            raise
        except PlatformClientError as exc:
            result.errors[topic] = exc.message
            # A transient failure (timeout, 5xx, 429) keeps the store due: beat's next run tries again.
            result.retry_soon = result.retry_soon or isinstance(exc, PlatformUnavailable)
            _record(connection, topic, state=State.ERROR, last_error=exc.message, now=now)
            continue
        note = ""
        if registrar.api_version and kept.api_version and kept.api_version != registrar.api_version:
            note = (
                f"Payloads come in API version {kept.api_version}, not {registrar.api_version}: the version is "
                "the app's (set its webhooks API version in the app's configuration)."
            )
        _record(
            connection,
            topic,
            state=State.ACTIVE,
            platform_id=kept.platform_id,
            address=kept.address,
            secret_fingerprint=fingerprint,
            last_verified_at=now,
            last_error=note,
            now=now,
        )
    for stale in ours:
        if stale.platform_id in handled:
            continue
        try:
            registrar.subscription_delete(stale)
            result.deleted.append(f"{stale.topic} ({stale.platform_id}, no longer needed)")
        except PlatformAuthenticationFailed:
            raise
        except PlatformClientError as exc:
            result.errors[stale.topic] = exc.message
    WebhookSubscription.objects.filter(connection=connection).exclude(topic__in=plan.topics).delete()


def _subscription_ensure(
    registrar: Registrar,
    found: RemoteSubscription | None,
    row: WebhookSubscription | None,
    topic: str,
    address: str,
    secret: str,
    fingerprint: str,
    result: SyncResult,
) -> RemoteSubscription:
    if found is None:
        created = registrar.subscription_create(topic=topic, address=address, secret=secret)
        result.created.append(topic)
        return created
    wrong = []
    if found.address != address:
        wrong.append(f"address was {found.address or 'empty'}")
    if not found.active:
        wrong.append("was not active")
    if registrar.carries_secret and (
        row is None or row.platform_id != found.platform_id or row.secret_fingerprint != fingerprint
    ):
        # Platforms never show a secret back: one we did not register (or a rotated one) is written.
        wrong.append("secret")
    if not wrong:
        result.verified.append(topic)
        return found
    updated = registrar.subscription_update(found, address=address, secret=secret)
    result.updated.append(f"{topic} ({', '.join(wrong)})")
    return updated


def _record(connection: StoreConnection, topic: str, *, state: str, now: datetime, **values) -> None:
    del now  # the row's date_last_modified is set on save
    WebhookSubscription.objects.update_or_create(
        connection=connection, topic=topic, defaults={"state": state, **values}
    )


def _record_errors(connection, topics, message: str, result: SyncResult, now: datetime) -> None:
    for topic in topics:
        result.errors[topic] = message
        _record(connection, topic, state=State.ERROR, last_error=message, now=now)


def _record_app_level(connection: StoreConnection, plan: SubscriptionPlan, now: datetime) -> None:
    for topic in plan.app_level_topics:
        _record(connection, topic, state=State.APP_LEVEL, address="", last_error="", now=now)
    WebhookSubscription.objects.filter(connection=connection).exclude(topic__in=plan.app_level_topics).delete()


# --------------------------------------------------------------------------------------------------
# Credentials refused
# --------------------------------------------------------------------------------------------------


MERCHANT_INVALID_SUBJECT = "Action needed: reconnect your {platform} store"
MERCHANT_INVALID_BODY = """Hello,

{platform} refused the credentials we hold for your store "{store}" ({reason}).

Until the store is connected again, refunds you make in {platform} may not reach the network's
shoppers automatically. Please reconnect the store (or send your account manager new credentials).

This message was sent once; the store's status shows "Invalid credentials" until it is reconnected.
"""


def store_connection_invalidate(connection: StoreConnection, *, reason: str, now: datetime | None = None) -> bool:
    """The platform refused the stored credentials: INVALID, with the reason; the merchant's users are
    e-mailed and the operator sees it in the admin triage. Returns False if it was INVALID already
    (nobody is told twice)."""
    now = now or timezone.now()
    changed = (
        StoreConnection.objects.filter(pk=connection.pk)
        .exclude(status__in=(StoreConnection.Status.INVALID, StoreConnection.Status.DISCONNECTED))
        .update(status=StoreConnection.Status.INVALID, last_error=reason[:2000], date_last_modified=now)
    )
    connection.refresh_from_db(fields=["status", "last_error"])
    if not changed:
        return False
    merchant = connection.merchant
    logger.error("Store connection %s of merchant %s marked INVALID: %s", connection.pk, merchant.pk, reason)
    recipients = sorted({email for email in merchant.memberships.values_list("user__email", flat=True) if email})
    if recipients:
        platform = merchant.get_platform_display()
        try:
            send_mail(
                MERCHANT_INVALID_SUBJECT.format(platform=platform),
                MERCHANT_INVALID_BODY.format(platform=platform, store=merchant.name, reason=reason[:300]),
                None,
                recipients,
            )
        except Exception:  # the status and the triage already say it; a mail outage must not undo that
            logger.exception("Could not e-mail merchant %s about its invalid connection", merchant.pk)
    return True


# --------------------------------------------------------------------------------------------------
# When
# --------------------------------------------------------------------------------------------------


def subscriptions_sync_later(connection: StoreConnection) -> None:
    """After the current transaction commits, sync the store's subscriptions in a worker. The store
    is also made due for beat's next run, in case the message is lost."""
    if subscription_plan(connection.merchant.platform).delivery == Delivery.NONE:
        return
    StoreConnection.objects.filter(pk=connection.pk).update(subscriptions_synced_at=None)
    connection_id = connection.pk

    def enqueue():
        try:
            tasks.sync_store_subscriptions.delay(connection_id)
        except Exception:  # broker down: beat's next run syncs it (subscriptions_synced_at is empty)
            logger.exception("Could not enqueue the subscription sync of connection %s", connection_id)

    transaction.on_commit(enqueue)


def subscriptions_sync_by_id(connection_id: int) -> SyncResult | None:
    connection = StoreConnection.objects.select_related("merchant").filter(pk=connection_id).first()
    return subscriptions_sync(connection) if connection is not None else None


def subscriptions_sync_due(*, now: datetime | None = None) -> list[SyncResult]:
    """Beat: the connected stores whose last sync is older than SUBSCRIPTIONS_SYNC_EVERY_SECONDS,
    never synced first, at most SUBSCRIPTIONS_SYNC_BATCH_SIZE; one store's failure stops nothing."""
    now = now or timezone.now()
    platforms = [platform for platform, adapter in ADAPTERS.items() if adapter.subscriptions.delivery != Delivery.NONE]
    due_before = now - timedelta(seconds=settings.SUBSCRIPTIONS_SYNC_EVERY_SECONDS)
    connections = (
        StoreConnection.objects.select_related("merchant")
        .filter(status=StoreConnection.Status.CONNECTED, merchant__platform__in=platforms)
        .filter(Q(subscriptions_synced_at__isnull=True) | Q(subscriptions_synced_at__lt=due_before))
        .order_by(F("subscriptions_synced_at").asc(nulls_first=True), "pk")[: settings.SUBSCRIPTIONS_SYNC_BATCH_SIZE]
    )
    results = []
    for connection in connections:
        try:
            results.append(subscriptions_sync(connection, now=now))
        except Exception:
            logger.exception("Subscription sync of connection %s failed", connection.pk)
    return results

"""One way a store connection ends (issue #22 item 4), whoever ends it: the platform's uninstall
webhook (Shopify `app/uninstalled`, BigCommerce `store/app/uninstalled`, Ecwid
`application.uninstalled`, Wix `AppInstanceRemoved`), the merchant's "Disconnect" button in the
portal, or an operator's admin action.

`store_connection_disconnect`: credentials and webhook secret wiped, status DISCONNECTED, the
moment and the reason kept. From then on the webhook receiver refuses the connection's deliveries
(410, nothing stored), and the poller and the parity check skip it (they only read CONNECTED
connections). Refunds already recorded go on to the end: their money moves through Stripe, not
through the store. Idempotent: disconnecting a disconnected connection changes nothing.

`store_connection_mark_invalid`: the platform answered 401 to our stored credentials (revoked
token, app removed without its webhook reaching us): INVALID, polls and parity checks stop, and
the merchant's portal users are told by e-mail once (not on every failing call).

`store_connection_reconnect`: a DISCONNECTED or INVALID connection made CONNECTED again gets a
fresh webhook secret (the old one may have leaked with the uninstalled app).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from platforms import selectors
from platforms.models import StoreConnection, new_webhook_secret

logger = logging.getLogger(__name__)


def store_connection_disconnect(*, connection: StoreConnection, actor: str, reason: str) -> bool:
    """Wipe the connection's secrets and mark it DISCONNECTED. Returns False when it already was."""
    with transaction.atomic():
        locked = (
            StoreConnection.objects.select_for_update().defer("credentials", "webhook_secret").get(pk=connection.pk)
        )
        if locked.status == StoreConnection.Status.DISCONNECTED:
            return False
        now = timezone.now()
        locked.webhook_secret = ""
        locked.status = StoreConnection.Status.DISCONNECTED
        locked.disconnected_at = now
        locked.disconnect_reason = f"{reason} ({actor})"[:255]
        locked.last_error = ""
        locked.save(
            update_fields=[
                "webhook_secret",
                "status",
                "disconnected_at",
                "disconnect_reason",
                "last_error",
                "date_last_modified",
            ]
        )
        # Through update(): save() would clear external_store_id with the credentials, and the
        # store's id (not a secret) still routes shop/redact, which comes 48 hours later.
        StoreConnection.objects.filter(pk=locked.pk).update(credentials=None)
    # This process stops accepting the old secret at once; others within the cache's few seconds.
    selectors.webhook_connection_cache_clear()
    logger.info("Store connection %s disconnected by %s: %s", connection.pk, actor, reason)
    connection.status = StoreConnection.Status.DISCONNECTED
    return True


def store_connection_mark_invalid(*, connection: StoreConnection, message: str) -> bool:
    """INVALID after the platform refused our credentials (401); tells the merchant once. Returns
    whether the status changed (a DISCONNECTED or already INVALID connection is left alone)."""
    changed = (
        StoreConnection.objects.filter(pk=connection.pk)
        .exclude(status__in=(StoreConnection.Status.INVALID, StoreConnection.Status.DISCONNECTED))
        .update(status=StoreConnection.Status.INVALID, last_error=message[:2000], date_last_modified=timezone.now())
    )
    if not changed:
        return False
    connection.status = StoreConnection.Status.INVALID
    logger.warning("Store connection %s marked INVALID: %s", connection.pk, message)
    transaction.on_commit(lambda: _tell_merchant_invalid(connection.merchant_id))
    return True


def _tell_merchant_invalid(merchant_id: int) -> None:
    from platforms.models import Merchant

    merchant = Merchant.objects.filter(pk=merchant_id).first()
    if merchant is None:
        return
    recipients = sorted({user.email for user in merchant.users.all() if user.email})
    if not recipients:
        return
    try:
        send_mail(
            subject=f"Your {merchant.get_platform_display()} store connection needs attention",
            message=(
                f"{merchant.get_platform_display()} refused the credentials we hold for {merchant.name} "
                "(the app may have been removed or its access revoked). Refunds from your store are not "
                "being read until you connect it again from the merchant portal."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except Exception:  # a mail outage must not undo the status change
        logger.exception("Could not e-mail merchant %s about its invalid connection", merchant_id)


def connection_auth_failure(connection: StoreConnection | None, exc: Exception) -> None:
    """Called where a platform call failed: a 401 marks the connection INVALID."""
    if connection is None or getattr(exc, "http_status", None) != 401:
        return
    store_connection_mark_invalid(connection=connection, message=str(getattr(exc, "message", exc)))


def store_connection_reconnect(*, connection: StoreConnection, webhook_secret: str | None = None) -> StoreConnection:
    """CONNECTED again; a connection coming back from DISCONNECTED or INVALID gets a fresh webhook
    secret (or the one given, e.g. a platform's app secret)."""
    update_fields = ["status", "disconnected_at", "disconnect_reason", "last_error", "date_last_modified"]
    if connection.status in (StoreConnection.Status.DISCONNECTED, StoreConnection.Status.INVALID) or webhook_secret:
        connection.webhook_secret = webhook_secret or new_webhook_secret()
        update_fields.append("webhook_secret")
    connection.status = StoreConnection.Status.CONNECTED
    connection.disconnected_at = None
    connection.disconnect_reason = ""
    connection.last_error = ""
    connection.save(update_fields=update_fields)
    selectors.webhook_connection_cache_clear()
    return connection

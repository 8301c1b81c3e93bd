"""Connect a merchant's store ("Violet Connect", seed 003): validate the credentials against the
platform with real calls, then store them encrypted on the merchant's StoreConnection.

Nothing is written unless the platform accepted the credentials, so a typo never replaces working
credentials. The credentials themselves never reach a log line, an exception message or an event:
only the merchant id and the site's display name do.

Wix app instance id (issue #15 item 1): Wix names the site of a webhook delivery only by the app's
`instanceId`. The API-key connect flow cannot read it (Wix's App Instance API needs the app's own
OAuth identity, not a merchant API key), so the form takes it as an optional field; left empty, a
reconnect keeps the instance id already stored. It is saved in the credentials (`instance_id`) and
copied to StoreConnection.external_store_id, which `/webhooks/wix/` routes by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from platforms import selectors
from platforms.clients.wix import GUID_PATTERN, WixCredentialsInvalid, validate_wix_credentials
from platforms.models import Merchant, Platform, StoreConnection, new_webhook_secret
from platforms.subscriptions.services import subscriptions_sync_later
from violet_refunds.exceptions import ValidationFailed

logger = logging.getLogger(__name__)

WIX_CREDENTIAL_FIELDS = ("api_key", "account_id", "site_id")
# Optional: the app instance id of the site (routes app-level Wix webhooks).
WIX_INSTANCE_FIELD = "instance_id"

# Characters a copy from a web page or a PDF brings along: zero-width spaces and joiners, word
# joiner, byte-order mark, soft hyphen. Whitespace (including no-break spaces) is handled by split().
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_WRAPPING_QUOTES = "\"'`\u201c\u201d\u2018\u2019<>"


def clean_pasted_value(value: str) -> str:
    """Remove copy/paste noise (seed 003: "check for any spaces or other copy/paste errors"): every
    whitespace character anywhere (keys and UUIDs never contain one, a wrapped paste does),
    invisible characters, and quotes or angle brackets around the value."""
    text = "".join(str(value or "").translate(_INVISIBLE).split())
    return text.strip(_WRAPPING_QUOTES)


@dataclass(frozen=True)
class ConnectResult:
    connection: StoreConnection
    site_name: str
    created: bool


@sensitive_variables("credentials", "cleaned", "api_key", "account_id", "site_id")
def _connect_wix(*, merchant: Merchant, credentials: Mapping[str, str], session=None) -> tuple[dict, str]:
    cleaned = {name: clean_pasted_value(credentials.get(name, "")) for name in WIX_CREDENTIAL_FIELDS}
    instance_id = _wix_instance_id(merchant, credentials.get(WIX_INSTANCE_FIELD, ""))
    # Formats are checked first (a malformed value costs no call to Wix), then two real calls.
    site = validate_wix_credentials(**cleaned, session=session)
    if instance_id:
        cleaned[WIX_INSTANCE_FIELD] = instance_id
    return cleaned, site.display_name


def _wix_instance_id(merchant: Merchant, value: str) -> str:
    """The app instance id given (format-checked, not another connection's), else the one stored."""
    instance_id = clean_pasted_value(value).lower()
    if not instance_id:
        stored = StoreConnection.objects.filter(merchant=merchant).values_list("external_store_id", flat=True).first()
        return stored or ""
    if not GUID_PATTERN.match(instance_id):
        raise WixCredentialsInvalid(
            "The app instance ID is not in the expected format.",
            field_errors={WIX_INSTANCE_FIELD: ["The app instance ID looks like 1b5ec6a4-8b3e-4d4a-9c6e-2f0a7c1e9d11."]},
        )
    if any(c.merchant_id != merchant.pk for c in selectors.connections_for_platform_store(Platform.WIX, instance_id)):
        raise WixCredentialsInvalid(
            "Another store is connected with this app instance ID.",
            field_errors={WIX_INSTANCE_FIELD: ["This app instance ID belongs to another connected store."]},
        )
    return instance_id


_CONNECTORS: dict[str, Callable[..., tuple[dict, str]]] = {Platform.WIX: _connect_wix}


@sensitive_variables("credentials", "stored")
def connect_store(*, merchant: Merchant, credentials: Mapping[str, str], user=None, session=None) -> ConnectResult:
    """Validate `credentials` with the merchant's platform and store them (encrypted).

    Raises WixCredentialsInvalid (per-field errors: fix the form), PlatformUnavailable (the platform
    could not be reached: nothing saved, try again), ValidationFailed (platform not connectable here).
    """
    connector = _CONNECTORS.get(merchant.platform)
    if connector is None:
        raise ValidationFailed(
            f"{merchant.get_platform_display()} stores are not connected through this page.",
            field_errors={"platform": ["Only Wix stores connect with an API key here."]},
        )
    stored, site_name = connector(merchant=merchant, credentials=credentials, session=session)
    now = timezone.now()
    with transaction.atomic():
        # The merchant row serializes two connects of the same store (double click, two tabs).
        Merchant.objects.select_for_update().get(pk=merchant.pk)
        # The old secrets are replaced, never read (they may not even decrypt after a key change).
        connection, created = StoreConnection.objects.defer("credentials", "webhook_secret").get_or_create(
            merchant=merchant
        )
        fields = ["credentials", "status", "last_verified_at", "last_error", "date_last_modified"]
        if not created and connection.status in (StoreConnection.Status.DISCONNECTED, StoreConnection.Status.INVALID):
            # Reconnecting after a disconnect (its secret was wiped) or revoked access: a fresh webhook
            # secret, as a new connection gets (issue #22).
            connection.webhook_secret = new_webhook_secret()
            connection.disconnected_at = None
            connection.disconnect_reason = ""
            fields += ["webhook_secret", "disconnected_at", "disconnect_reason"]
        connection.credentials = stored
        connection.status = StoreConnection.Status.CONNECTED
        connection.last_verified_at = now
        connection.last_error = ""
        connection.save(update_fields=fields)
        # Issue #24: its webhook subscriptions, in a worker once this commits.
        subscriptions_sync_later(connection)
    logger.info(
        "Store of merchant %s connected (%s site %r) by user %s",
        merchant.pk,
        merchant.platform,
        site_name,
        getattr(user, "pk", None),
    )
    return ConnectResult(connection=connection, site_name=site_name, created=created)


__all__ = ["ConnectResult", "WixCredentialsInvalid", "clean_pasted_value", "connect_store"]

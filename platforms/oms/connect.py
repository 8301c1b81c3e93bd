"""Connect or disconnect an SFCC merchant's order management system (issue #25 item 2).

The merchant (portal) or an operator (admin) gives the org's My Domain URL and the connected app's
client id and secret. Nothing is saved unless the OMS accepted them with real calls (a token and a
test query, `OmsAdapter.credentials_validate`); the URL must be https and resolve to public
addresses only (violet_refunds.outbound; the send-time check protects every later call too).
The credentials are stored encrypted on OmsConnection and never logged. Connecting switches the
merchant to SfccRefundMode.ORDER_MANAGEMENT; disconnecting wipes the credentials and switches it to
Option 2 (manual notices), so its refunds always have a source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from platforms.clients.base import PlatformRequestRejected
from platforms.connect import clean_pasted_value
from platforms.models import Merchant, OmsConnection, OmsSystem, Platform, SfccRefundMode, StoreConnection
from platforms.oms import get_oms_adapter
from platforms.oms.salesforce import normalize_base_url
from violet_refunds.exceptions import ValidationFailed
from violet_refunds.outbound import host_addresses_check

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckedOmsCredentials:
    system: str
    base_url: str
    credentials: dict = field(repr=False)
    org_label: str = ""


@sensitive_variables("client_id", "client_secret", "credentials")
def oms_credentials_check(
    *, merchant: Merchant, base_url: str, client_id: str, client_secret: str, system: str, session=None
) -> CheckedOmsCredentials:
    """Validate with the OMS (real calls), saving nothing. Raises ValidationFailed (per-field
    errors) or PlatformUnavailable (the OMS could not be reached: try again)."""
    if merchant.platform != Platform.SFCC:
        raise ValidationFailed(
            "Only Salesforce Commerce Cloud merchants connect an order management system.",
            field_errors={"merchant": ["This store is not on Salesforce Commerce Cloud."]},
        )
    adapter = get_oms_adapter(system)
    if adapter is None:
        raise ValidationFailed("Unknown order management system.", field_errors={"system": ["Not supported."]})
    try:
        url = normalize_base_url(str(base_url or "").strip())
    except ValueError as exc:
        raise ValidationFailed(str(exc), field_errors={"base_url": [str(exc)]}) from None
    parts = urlsplit(url)
    if host_addresses_check(parts.hostname or "", parts.port) is not None:
        message = "The My Domain URL does not point to a public address."
        raise ValidationFailed(message, field_errors={"base_url": [message]})
    credentials = {"client_id": clean_pasted_value(client_id), "client_secret": clean_pasted_value(client_secret)}
    missing = {name: ["Required."] for name, value in credentials.items() if not value}
    if missing:
        raise ValidationFailed("Enter the connected app's consumer key and secret.", field_errors=missing)
    try:
        org_label = adapter.credentials_validate(base_url=url, credentials=credentials, session=session)
    except PlatformRequestRejected as exc:
        message = f"{adapter.label} did not accept these credentials (HTTP {exc.http_status or '?'})."
        raise ValidationFailed(
            message,
            field_errors={
                "client_id": [
                    "Check the consumer key and secret, that the client credentials flow is enabled and that its "
                    "user may read credit memos."
                ]
            },
        ) from None
    return CheckedOmsCredentials(system=system, base_url=url, credentials=credentials, org_label=org_label)


def oms_connection_save(*, merchant: Merchant, checked: CheckedOmsCredentials, user=None) -> OmsConnection:
    """Store credentials `oms_credentials_check` accepted (encrypted) and switch the merchant to the
    OMS mode; the merchant's StoreConnection (which its events hang on) is created if missing."""
    now = timezone.now()
    with transaction.atomic():
        locked = Merchant.objects.select_for_update().get(pk=merchant.pk)
        oms, _ = OmsConnection.objects.defer("credentials").get_or_create(
            merchant=locked, defaults={"system": checked.system, "base_url": checked.base_url}
        )
        oms.system = checked.system
        oms.base_url = checked.base_url
        oms.credentials = checked.credentials
        oms.status = OmsConnection.Status.CONNECTED
        oms.last_verified_at = now
        oms.last_error = ""
        oms.backoff_until = None
        oms.save()
        connection, created = StoreConnection.objects.defer("credentials", "webhook_secret").get_or_create(
            merchant=locked, defaults={"status": StoreConnection.Status.CONNECTED, "last_verified_at": now}
        )
        if not created and connection.status == StoreConnection.Status.PENDING:
            StoreConnection.objects.filter(pk=connection.pk).update(status=StoreConnection.Status.CONNECTED)
        if locked.sfcc_refund_mode != SfccRefundMode.ORDER_MANAGEMENT:
            Merchant.objects.filter(pk=locked.pk).update(sfcc_refund_mode=SfccRefundMode.ORDER_MANAGEMENT)
            merchant.sfcc_refund_mode = SfccRefundMode.ORDER_MANAGEMENT
    logger.info(
        "OMS of merchant %s connected (%s %s) by user %s",
        merchant.pk,
        checked.system,
        checked.org_label,
        getattr(user, "pk", None),
    )
    return oms


@sensitive_variables("client_id", "client_secret")
def oms_connect(
    *,
    merchant: Merchant,
    base_url: str,
    client_id: str,
    client_secret: str,
    system: str = OmsSystem.SALESFORCE_OM,
    user=None,
    session=None,
) -> OmsConnection:
    """Validate with the OMS, then store (nothing is saved unless the OMS accepted them)."""
    checked = oms_credentials_check(
        merchant=merchant,
        base_url=base_url,
        client_id=client_id,
        client_secret=client_secret,
        system=system,
        session=session,
    )
    return oms_connection_save(merchant=merchant, checked=checked, user=user)


def oms_disconnect(*, merchant: Merchant, user=None) -> OmsConnection | None:
    """Forget the credentials; the merchant goes back to Option 2 (it reports refunds itself)."""
    with transaction.atomic():
        locked = Merchant.objects.select_for_update().get(pk=merchant.pk)
        oms = OmsConnection.objects.filter(merchant=locked).first()
        if oms is None:
            return None
        oms.credentials = None
        oms.status = OmsConnection.Status.DISCONNECTED
        oms.backoff_until = None
        oms.save(update_fields=["credentials", "status", "backoff_until", "date_last_modified"])
        if locked.sfcc_refund_mode == SfccRefundMode.ORDER_MANAGEMENT:
            Merchant.objects.filter(pk=locked.pk).update(sfcc_refund_mode=SfccRefundMode.MANUAL_NOTICE)
            merchant.sfcc_refund_mode = SfccRefundMode.MANUAL_NOTICE
    logger.info("OMS of merchant %s disconnected by user %s", merchant.pk, getattr(user, "pk", None))
    return oms

"""Webhook endpoints: registration (with URL validation), changes, resume, disable, delete.

An app registers up to MAX_ENDPOINTS_PER_APP endpoints, each with its own signing secret (shown
once). Resuming clears the failure record and lets the relay hand over what waited; disabling
cancels what waited (notifications.services.delivery keeps the pause/disable bookkeeping).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications.models import SUBSCRIBABLE_EVENT_TYPES, WebhookEndpoint
from notifications.selectors import ChannelApp
from notifications.services.delivery import deliveries_relay_kick, endpoint_disable_locked
from notifications.signing import signing_secret_generate
from violet_refunds.exceptions import Conflict, RequestUnprocessable, ValidationFailed
from violet_refunds.outbound import address_is_allowed, host_addresses_check

logger = logging.getLogger(__name__)

# --- registration -----------------------------------------------------------------------------------
MAX_ENDPOINTS_PER_APP = 20


@dataclass(frozen=True)
class RegisteredEndpoint:
    endpoint: WebhookEndpoint
    signing_secret: str  # returned once, at registration


def _url_error(message: str) -> ValidationFailed:
    return ValidationFailed("The webhook is invalid.", field_errors={"remote_endpoint": [message]})


def webhook_url_validate(url) -> str:
    """HTTPS, to a public host; with DEBUG on, http and local addresses are allowed (development).

    With DEBUG off the name is resolved now and refused if any of its addresses is not public (nor
    in OUTBOUND_ALLOWED_PRIVATE_NETWORKS). A name that does not resolve yet is accepted: the
    sender resolves and checks again on every attempt, which is the check that protects."""
    if not isinstance(url, str) or not url.strip():
        raise _url_error("A URL is required.")
    url = url.strip()
    if len(url) > 500:
        raise _url_error("At most 500 characters.")
    debug = bool(settings.DEBUG)
    schemes = ["http", "https"] if debug else ["https"]
    try:
        URLValidator(schemes=schemes)(url)
    except DjangoValidationError:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "http" and not debug:
            raise _url_error("Must be an https:// URL.") from None
        raise _url_error("Enter a valid URL" + ("." if debug else " starting with https://.")) from None
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise _url_error("Credentials in the URL are not allowed; the signature authenticates us.")
    try:
        port = parts.port  # urllib raises ValueError for a port outside 0-65535, which URLValidator lets by
    except ValueError:
        # Well-formed as the schema describes a URL, meaningless as an address: 422, not 400.
        raise RequestUnprocessable(
            "The webhook is invalid.", field_errors={"remote_endpoint": ["The port must be a number from 1 to 65535."]}
        ) from None
    if not debug:
        host = parts.hostname or ""
        if _is_local_host(host):
            raise _url_error("Must be a public host, not a local or private address.")
        if host_addresses_check(host, port) is not None:
            raise _url_error(f"{host} resolves to a local or private address; webhooks go to public hosts only.")
    return url


def _is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ip_address(host)
    except ValueError:
        return False  # a name: resolved by host_addresses_check
    return not address_is_allowed(address)


def event_types_validate(event_types) -> list[str]:
    if event_types is None:
        return []
    if not isinstance(event_types, list | tuple) or not all(isinstance(t, str) for t in event_types):
        raise ValidationFailed("The webhook is invalid.", field_errors={"events": ["A list of event types."]})
    unknown = sorted({t for t in event_types if t not in SUBSCRIBABLE_EVENT_TYPES})
    if unknown:
        raise ValidationFailed(
            "The webhook is invalid.",
            field_errors={"events": [f"Unknown event type(s): {', '.join(unknown)}."]},
        )
    return list(dict.fromkeys(event_types))


def webhook_endpoint_register(
    *, app: ChannelApp, url: str, event_types: Sequence[str] = (), actor: str
) -> RegisteredEndpoint:
    url = webhook_url_validate(url)
    types = event_types_validate(list(event_types))
    # By id: `app` is the channel's App duck-typed (ChannelApp), which the typed lookups do not accept.
    if WebhookEndpoint.objects.filter(app_id=app.pk).count() >= MAX_ENDPOINTS_PER_APP:
        raise Conflict(f"An app can have at most {MAX_ENDPOINTS_PER_APP} webhooks.", error_code="too_many_webhooks")
    if WebhookEndpoint.objects.filter(app_id=app.pk, url=url).exists():
        raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists")
    secret = signing_secret_generate()
    try:
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.create(app_id=app.pk, url=url, event_types=types, signing_secret=secret)
    except IntegrityError:  # the same URL registered concurrently
        raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists") from None
    logger.info("webhook %s registered for app %s by %s: %s %s", endpoint.pk, app.pk, actor, url, types or "all")
    return RegisteredEndpoint(endpoint=endpoint, signing_secret=secret)


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    actor: str,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    status: str | None = None,
) -> WebhookEndpoint:
    """Change the URL or the subscription; status ACTIVE resumes or re-enables, DISABLED stops."""
    fields = []
    if url is not None:
        url = webhook_url_validate(url)
        if url != endpoint.url:
            if WebhookEndpoint.objects.filter(app_id=endpoint.app_id, url=url).exclude(pk=endpoint.pk).exists():
                raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists")
            endpoint.url = url
            fields.append("url")
    if event_types is not None:
        endpoint.event_types = event_types_validate(list(event_types))
        fields.append("event_types")
    if fields:
        try:
            with transaction.atomic():
                endpoint.save(update_fields=[*fields, "date_last_modified"])
        except IntegrityError:
            raise Conflict("A webhook with this URL is already registered.", error_code="webhook_exists") from None
    if status == WebhookEndpoint.Status.ACTIVE:
        endpoint = webhook_endpoint_resume(endpoint=endpoint, actor=actor)
    elif status == WebhookEndpoint.Status.DISABLED:
        endpoint = webhook_endpoint_disable(endpoint=endpoint, actor=actor, reason=f"Disabled by {actor}.")
    elif status is not None:
        raise ValidationFailed("The webhook is invalid.", field_errors={"status": ["ACTIVE or DISABLED."]})
    return endpoint


def webhook_endpoint_resume(*, endpoint: WebhookEndpoint, actor: str) -> WebhookEndpoint:
    """Back to ACTIVE now (a paused or disabled endpoint), with a clean failure record. Deliveries
    cancelled by a disable stay cancelled; the channel can resend them."""
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        current.status = WebhookEndpoint.Status.ACTIVE
        current.paused_until = None
        current.pause_rounds = 0
        current.failure_window_started_at = None
        current.failures_in_window = 0
        current.disabled_reason = ""
        current.save()
    logger.info("webhook %s resumed by %s", endpoint.pk, actor)
    transaction.on_commit(deliveries_relay_kick)
    return current


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, actor: str, reason: str) -> WebhookEndpoint:
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint_disable_locked(current, reason=reason, now=timezone.now())
    logger.info("webhook %s disabled by %s: %s", endpoint.pk, actor, reason)
    return current


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: str) -> None:
    """Remove the endpoint and its deliveries; the app's events stay (GET /events still lists them)."""
    endpoint_id = endpoint.pk
    endpoint.delete()
    logger.info("webhook %s deleted by %s", endpoint_id, actor)

"""Webhook receivers: verify on the raw bytes -> store the raw event -> enqueue on commit -> 200 fast.

Platforms give us 1.25 s (Wix) to 5 s (Shopify) and retry anything but a fast 2xx, so nothing here
reads a platform API or records refunds: that happens in the processing task.

Two kinds of URL:
- per connection, `/webhooks/<platform>/<connection public id>/`: verified with the connection's
  stored secret, the event belongs to that connection;
- app-level, `/webhooks/ecwid/` and `/webhooks/wix/` (issue #15 item 1): Ecwid and Wix send every
  store's deliveries to the app's one URL. Verified with the app's secret (ECWID_CLIENT_SECRETS,
  WIX_APP_PUBLIC_KEYS) and routed by the store the body names (Ecwid `storeId`, Wix `instanceId`)
  to the connection with that `external_store_id`. A store no connection names is still stored and
  answered 200 (the platform would retry for a day otherwise); processing then ignores it with
  "No connection for Ecwid store <id>", and a replay once the store is connected records it.
  `/webhooks/shopify/` (issue #22) is Shopify's app-level URL for the compliance topics and
  app/uninstalled, verified with SHOPIFY_APP_SECRETS and routed by X-Shopify-Shop-Domain.

Privacy (issue #22, docs/privacy.md): only allow-listed headers are stored (never a signature or
an auth value); lifecycle deliveries (uninstall, Shopify's compliance topics) are acted on at once
and stored as no InboundEvent; a DISCONNECTED connection's deliveries are refused with 410 and
nothing stored, except Shopify's compliance topics verified with the app secret (shop/redact
arrives 48 hours after the uninstall wiped the connection's secret).
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from platforms import selectors, services
from platforms.adapters import webhook_adapter_for_slug
from platforms.adapters.base import (
    LIFECYCLE_ORDER_ANONYMIZED,
    LIFECYCLE_UNINSTALLED,
    PayloadMalformed,
    SignatureInvalid,
)
from platforms.models import StoreConnection
from platforms.privacy import compliance, disconnect, ingest
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.exceptions import error_body, request_body_error

logger = logging.getLogger(__name__)

# The largest webhook body accepted (Shopify orders with many lines stay far below it).
# Override with the PLATFORM_WEBHOOK_MAX_BODY_BYTES setting.
DEFAULT_WEBHOOK_MAX_BODY_BYTES = 1024 * 1024


def webhook_max_body_bytes() -> int:
    return int(getattr(settings, "PLATFORM_WEBHOOK_MAX_BODY_BYTES", DEFAULT_WEBHOOK_MAX_BODY_BYTES))


def _error(status: int, message: str, error_code: str) -> JsonResponse:
    return JsonResponse(error_body(status, message, error_code), status=status)


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _headers_to_store(request, adapter) -> dict:
    return ingest.headers_to_store(request.headers, getattr(adapter, "stored_headers", ()))


def _other_store(connection, envelope) -> bool:
    """A delivery naming another store than the connection's (an app secret is shared by every
    store of the app, so a genuine delivery for another store verifies too)."""
    own = connection.external_store_id
    return bool(own and envelope.store_id and envelope.store_id != own)


def _lifecycle_answer(*, adapter, envelope, body: bytes, connection) -> JsonResponse:
    """Uninstall: the connection is disconnected. Compliance topic: a PrivacyRequest is recorded
    (and done in a task). Nothing is stored as an InboundEvent."""
    if connection is not None and _other_store(connection, envelope):
        return JsonResponse({"status": "ignored", "event_id": envelope.event_id}, status=200)
    if envelope.lifecycle == LIFECYCLE_UNINSTALLED:
        if connection is not None:
            disconnect.store_connection_disconnect(
                connection=connection, actor=f"platform:{adapter.platform.lower()}", reason=f"{envelope.topic} webhook"
            )
        status = "disconnected" if connection is not None else "unknown_store"
        return JsonResponse({"status": status, "event_id": envelope.event_id}, status=200)
    if envelope.lifecycle == LIFECYCLE_ORDER_ANONYMIZED:
        if connection is not None:
            compliance.order_anonymized_erase(
                connection=connection,
                platform=adapter.platform,
                delivery_id=envelope.event_id,
                order_id=envelope.order_id,
            )
        return JsonResponse({"status": "erased", "event_id": envelope.event_id}, status=200)
    result = compliance.privacy_request_receive(
        platform=adapter.platform,
        topic=envelope.lifecycle,
        delivery_id=envelope.event_id,
        body=body,
        connection=connection,
    )
    return JsonResponse(
        {"status": "received" if result.created else "duplicate", "event_id": envelope.event_id}, status=200
    )


def _refused_disconnected() -> JsonResponse:
    return _error(410, "This store connection is disconnected.", "connection_disconnected")


def _authenticate_with_app_secrets(adapter, body: bytes, headers):
    """The envelope, verified with any of the app's secrets; SignatureInvalid when none matches."""
    app_secrets = getattr(adapter, "app_webhook_secrets", None)
    for secret in app_secrets() if app_secrets is not None else ():
        try:
            return adapter.authenticate(body=body, headers=headers, secret=secret)
        except SignatureInvalid:
            continue
    raise SignatureInvalid("The signature matches none of the configured app secrets.")


def _method_not_allowed() -> JsonResponse:
    response = _error(405, "Webhooks are delivered with POST.", "method_not_allowed")
    response["Allow"] = "POST"
    return response


def _read_body(request) -> bytes | JsonResponse:
    """The raw body, or the 413 answer when it is larger than the limit."""
    limit = webhook_max_body_bytes()
    if _declared_length(request) > limit:
        return _error(413, f"The body is larger than {limit} bytes.", "payload_too_large")
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(413, f"The body is larger than {limit} bytes.", "payload_too_large")
    return body


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadMalformed("The body is not UTF-8.") from exc


@csrf_exempt
@transaction.non_atomic_requests
def receive_app_webhook(request, platform: str):
    """`/webhooks/ecwid/`, `/webhooks/wix/`: one URL for every store of the app, routed by the body."""
    if request.method != "POST":
        return _method_not_allowed()
    adapter = webhook_adapter_for_slug(platform)
    app_secrets = getattr(adapter, "app_webhook_secrets", None)
    secrets = app_secrets() if app_secrets is not None else ()
    if adapter is None or not secrets:
        # Not an app-level platform, or no app secret configured for it: nothing can verify a delivery.
        return _error(404, "No such webhook endpoint.", "not_found")
    body = _read_body(request)
    if isinstance(body, JsonResponse):
        return body
    try:
        # One secret per app of the network; any may have signed it.
        envelope = _authenticate_with_app_secrets(adapter, body, request.headers)
        connections = selectors.connections_for_platform_store(adapter.platform, envelope.store_id)
        connection = connections[0] if len(connections) == 1 else None
        if envelope.lifecycle:
            return _lifecycle_answer(adapter=adapter, envelope=envelope, body=body, connection=connection)
        if connection is not None and connection.status == StoreConnection.Status.DISCONNECTED:
            return _refused_disconnected()
        result = services.event_ingest(
            connection=connection,
            platform=adapter.platform,
            envelope=envelope,
            body=_text(body),
            headers=_headers_to_store(request, adapter),
            remote_ip=request.META.get("REMOTE_ADDR") or None,
        )
    except (SignatureInvalid, PayloadMalformed) as exc:
        logger.info("Rejected app-level %s webhook: %s", platform, exc.message)
        return _error(exc.status_code, exc.message, exc.error_code)
    if connection is None and result.created:
        logger.warning("App-level %s webhook for store %r: no single connection names it", platform, envelope.store_id)
    return JsonResponse(
        {"status": "received" if result.created else "duplicate", "event_id": envelope.event_id}, status=200
    )


@csrf_exempt
@transaction.non_atomic_requests
def receive_webhook(request, platform: str, public_id: str):
    if request.method != "POST":
        return _method_not_allowed()
    adapter = webhook_adapter_for_slug(platform)
    try:
        connection = selectors.connection_for_webhook(public_id)
    except CredentialsUnreadable:
        logger.error("Webhook for connection %s: its secret cannot be decrypted", public_id)
        return _error(503, "The store connection cannot be read right now.", "connection_unreadable")
    if adapter is None or connection is None or connection.merchant.platform != adapter.platform:
        return _error(404, "No such webhook endpoint.", "not_found")

    body = _read_body(request)
    if isinstance(body, JsonResponse):
        return body

    # A platform's unsigned test delivery when a webhook is set up (WooCommerce shows the merchant
    # an error unless it gets a 200): acknowledged, stored nowhere, nothing done.
    is_setup_ping = getattr(adapter, "is_setup_ping", None)
    if is_setup_ping is not None and is_setup_ping(body=body, headers=request.headers):
        return JsonResponse({"status": "ping"}, status=200)

    if connection.status == StoreConnection.Status.DISCONNECTED:
        return _disconnected_answer(request, adapter, body, connection)

    try:
        try:
            envelope = adapter.authenticate(body=body, headers=request.headers, secret=connection.webhook_secret or "")
        except SignatureInvalid:
            # The connection may come from the per-process cache: before refusing, check the live row
            # (a secret rotated seconds ago must work at once).
            live = selectors.connection_for_webhook(public_id, fresh=True)
            if live is None or live.merchant.platform != adapter.platform:
                raise
            connection = live
            if connection.status == StoreConnection.Status.DISCONNECTED:
                return _disconnected_answer(request, adapter, body, connection)
            envelope = adapter.authenticate(body=body, headers=request.headers, secret=connection.webhook_secret or "")
        if envelope.lifecycle:
            return _lifecycle_answer(adapter=adapter, envelope=envelope, body=body, connection=connection)
        result = services.event_ingest(
            connection=connection,
            envelope=envelope,
            body=_text(body),
            headers=_headers_to_store(request, adapter),
            remote_ip=request.META.get("REMOTE_ADDR") or None,
        )
    except (SignatureInvalid, PayloadMalformed) as exc:
        logger.info("Rejected %s webhook for connection %s: %s", platform, public_id, exc.message)
        return _error(exc.status_code, exc.message, exc.error_code)
    except (RecursionError, RequestDataTooBig) as exc:
        # A signed body nested deeper than the JSON parser goes, or too large: the API's one
        # translation of unreadable bodies (400 invalid_body / 413 payload_too_large), nothing stored.
        error = request_body_error(exc)
        assert error is not None
        logger.info("Rejected %s webhook for connection %s: %s", platform, public_id, error.message)
        return _error(error.status_code, error.message, str(error.error_code))
    return JsonResponse(
        {"status": "received" if result.created else "duplicate", "event_id": envelope.event_id}, status=200
    )


def _disconnected_answer(request, adapter, body: bytes, connection) -> JsonResponse:
    """A delivery for a DISCONNECTED connection: refused (410, nothing stored), unless it is a
    compliance topic verified with the app's secret (the connection's own secret is wiped)."""
    try:
        envelope = _authenticate_with_app_secrets(adapter, body, request.headers)
    except (SignatureInvalid, PayloadMalformed):
        return _refused_disconnected()
    if envelope.lifecycle and envelope.lifecycle not in (LIFECYCLE_UNINSTALLED, LIFECYCLE_ORDER_ANONYMIZED):
        try:
            return _lifecycle_answer(adapter=adapter, envelope=envelope, body=body, connection=connection)
        except PayloadMalformed as exc:
            return _error(exc.status_code, exc.message, exc.error_code)
    if envelope.lifecycle == LIFECYCLE_UNINSTALLED:
        return JsonResponse({"status": "disconnected", "event_id": envelope.event_id}, status=200)
    return _refused_disconnected()

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
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from platforms import selectors, services
from platforms.adapters import webhook_adapter_for_slug
from platforms.adapters.base import PayloadMalformed, SignatureInvalid
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.exceptions import error_body, request_body_error

logger = logging.getLogger(__name__)

# The largest webhook body accepted (Shopify orders with many lines stay far below it).
# Override with the PLATFORM_WEBHOOK_MAX_BODY_BYTES setting.
DEFAULT_WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
# Request headers never stored with the event.
_HEADERS_NOT_STORED = frozenset({"cookie", "authorization"})


def webhook_max_body_bytes() -> int:
    return int(getattr(settings, "PLATFORM_WEBHOOK_MAX_BODY_BYTES", DEFAULT_WEBHOOK_MAX_BODY_BYTES))


def _error(status: int, message: str, error_code: str) -> JsonResponse:
    return JsonResponse(error_body(status, message, error_code), status=status)


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _headers_to_store(request) -> dict:
    return {name: value for name, value in request.headers.items() if name.lower() not in _HEADERS_NOT_STORED}


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
        envelope = None
        for secret in secrets:  # one per app of the network; any may have signed it
            try:
                envelope = adapter.authenticate(body=body, headers=request.headers, secret=secret)
                break
            except SignatureInvalid:
                continue
        if envelope is None:
            raise SignatureInvalid("The signature matches none of the configured app secrets.")
        connections = selectors.connections_for_platform_store(adapter.platform, envelope.store_id)
        connection = connections[0] if len(connections) == 1 else None
        result = services.event_ingest(
            connection=connection,
            platform=adapter.platform,
            envelope=envelope,
            body=_text(body),
            headers=_headers_to_store(request),
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
            envelope = adapter.authenticate(body=body, headers=request.headers, secret=connection.webhook_secret or "")
        result = services.event_ingest(
            connection=connection,
            envelope=envelope,
            body=_text(body),
            headers=_headers_to_store(request),
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

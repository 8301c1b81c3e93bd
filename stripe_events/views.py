"""Stripe's webhook receiver, /webhooks/stripe/<endpoint public id>/: verify on the raw bytes, store the
raw event once, enqueue its processing on commit, answer 200 fast (Stripe retries anything else for
up to three days). A bad signature is a 400 in the one JSON error shape and stores nothing."""

import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from stripe_events import services
from stripe_events.models import StripeWebhookEndpoint
from violet_refunds.crypto import CredentialsUnreadable
from violet_refunds.exceptions import ApplicationError, error_body

logger = logging.getLogger(__name__)

# Stripe's Event objects stay far below this (PLATFORM_WEBHOOK_MAX_BODY_BYTES applies to both receivers).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, message: str, error_code: str) -> JsonResponse:
    return JsonResponse(error_body(status, message, error_code), status=status)


@csrf_exempt
@transaction.non_atomic_requests
def receive_stripe_webhook(request, public_id: str):
    if request.method != "POST":
        response = _error(405, "Webhooks are delivered with POST.", "method_not_allowed")
        response["Allow"] = "POST"
        return response
    try:
        endpoint_id = uuid.UUID(public_id)
    except ValueError:
        return _error(404, "No such webhook endpoint.", "not_found")
    endpoint = StripeWebhookEndpoint.objects.filter(public_id=endpoint_id, enabled=True).first()
    if endpoint is None:
        return _error(404, "No such webhook endpoint.", "not_found")
    limit = int(getattr(settings, "PLATFORM_WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(413, f"The body is larger than {limit} bytes.", "payload_too_large")
    try:
        result = services.stripe_event_ingest(
            endpoint=endpoint, payload=body, headers=request.headers, remote_ip=request.META.get("REMOTE_ADDR")
        )
    except CredentialsUnreadable:
        logger.error("Stripe webhook endpoint %s: its secrets cannot be decrypted", public_id)
        return _error(503, "The endpoint cannot be read right now.", "endpoint_unreadable")
    except ApplicationError as exc:
        logger.info("Rejected Stripe webhook for endpoint %s: %s", public_id, exc.message)
        return _error(exc.status_code, exc.message, str(exc.error_code))
    return JsonResponse(
        {"status": "received" if result.created else "duplicate", "event_id": result.event.stripe_id}, status=200
    )

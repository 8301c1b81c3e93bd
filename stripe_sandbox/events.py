"""Stripe Events the sandbox emits, and their webhook delivery, signed exactly as Stripe signs.

`emit` runs inside the transaction that changed the object: the event row commits with the change,
and delivery is scheduled for after the commit (`transaction.on_commit`), so a rolled-back change
announces nothing and a failing receiver never breaks the API call that caused the event.

Delivery target (settings): STRIPE_SANDBOX_WEBHOOK_URL (an HTTP POST), else
STRIPE_SANDBOX_WEBHOOK_RECEIVER (a dotted path to `receiver(payload: bytes, headers: dict[str, str])`,
called in-process), else none. Each delivery carries
`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">` with STRIPE_SANDBOX_WEBHOOK_SECRET,
which `stripe.Webhook.construct_event` verifies. A failed delivery is retried by the sweep, at most
MAX_DELIVERY_ATTEMPTS times in all.
"""

import hashlib
import hmac
import json
import logging
import time

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils.module_loading import import_string

from . import clock
from .ids import new_id
from .models import SandboxEvent

logger = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 5
HTTP_TIMEOUT_SECONDS = 10


def emit(
    event_type: str,
    obj: dict,
    *,
    previous_attributes: dict | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> SandboxEvent:
    """Store an Event about `obj` (the full object as it now is) and deliver it after the commit."""
    created = clock.now()
    data: dict = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    stripe_id = new_id("evt")
    body = {
        "id": stripe_id,
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": int(created.timestamp()),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }
    if not _endpoint_configured():  # the common case in benchmarks and most tests: no work after commit
        return SandboxEvent.objects.create(
            stripe_id=stripe_id, type=event_type, created=created, body=body, delivery=SandboxEvent.Delivery.NO_ENDPOINT
        )
    event = SandboxEvent.objects.create(stripe_id=stripe_id, type=event_type, created=created, body=body)
    transaction.on_commit(lambda: deliver(event.pk))
    return event


def _endpoint_configured() -> bool:
    return bool(settings.STRIPE_SANDBOX_WEBHOOK_URL or settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER)


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's `Stripe-Signature` value for `payload` (timestamp: real time, as Stripe's tolerance expects)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def payload_of(event: SandboxEvent) -> bytes:
    return json.dumps(event.body, separators=(",", ":")).encode()


def deliver(event_pk: int) -> str:
    """One delivery attempt of a stored event; records the outcome and never raises. Returns the new state."""
    event = SandboxEvent.objects.filter(pk=event_pk).first()
    if event is None or event.delivery == SandboxEvent.Delivery.DELIVERED:
        return event.delivery if event else ""
    url = settings.STRIPE_SANDBOX_WEBHOOK_URL
    receiver_path = settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER
    if not url and not receiver_path:
        SandboxEvent.objects.filter(pk=event.pk).update(delivery=SandboxEvent.Delivery.NO_ENDPOINT)
        return SandboxEvent.Delivery.NO_ENDPOINT
    payload = payload_of(event)
    headers = {
        "Stripe-Signature": signature_header(payload, settings.STRIPE_SANDBOX_WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }
    error = ""
    try:
        if url:
            response = requests.post(url, data=payload, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}: {response.text[:500]}"
        else:
            import_string(receiver_path)(payload, headers)
    except Exception as exc:  # a receiver's failure is recorded and retried, never raised into the API call
        logger.warning("Stripe sandbox could not deliver %s: %s", event.stripe_id, exc)
        error = f"{type(exc).__name__}: {exc}"[:2000]
    state = SandboxEvent.Delivery.FAILED if error else SandboxEvent.Delivery.DELIVERED
    SandboxEvent.objects.filter(pk=event.pk).update(
        delivery=state, delivery_attempts=F("delivery_attempts") + 1, last_delivery_error=error
    )
    return state


def redeliver_failed() -> int:
    """Retry deliveries that failed, within the attempt bound. Returns how many were attempted."""
    due = SandboxEvent.objects.filter(
        delivery=SandboxEvent.Delivery.FAILED, delivery_attempts__lt=MAX_DELIVERY_ATTEMPTS
    ).order_by("pk")
    attempted = 0
    for event_pk in due.values_list("pk", flat=True):
        deliver(event_pk)
        attempted += 1
    return attempted

"""Stripe Event objects in Stripe's documented shape, signed as Stripe signs them, posted to our receiver.

The Event envelope (API reference, "The Event object"): id, object "event", api_version, created,
data.object (the resource as it was when the event happened) and data.previous_attributes (the
fields that changed, on *.updated), livemode, pending_webhooks, request {id, idempotency_key}, type.
The signature header (docs "Check the webhook signatures"): `t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" with the endpoint's secret>`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time

from django.conf import settings
from django.test import TestCase
from django.urls import reverse

from stripe_sandbox import objects
from stripe_sandbox.models import SandboxPaymentIntent, SandboxRefund, SandboxTransfer

_sequence = itertools.count(1)


def stripe_event(
    event_type: str,
    obj: dict,
    *,
    previous_attributes: dict | None = None,
    event_id: str | None = None,
    created: int | None = None,
) -> dict:
    number = next(_sequence)
    data: dict = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or f"evt_test_{number:06d}_{int(time.time())}",
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": created if created is not None else int(time.time()),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_test_{number:06d}", "idempotency_key": None},
        "type": event_type,
    }


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_event(client, endpoint, event: dict, *, secret: str | None = None, timestamp: int | None = None):
    payload = json.dumps(event, separators=(",", ":")).encode()
    secret = secret if secret is not None else endpoint.secrets[0]
    # The receiver enqueues processing on commit: run it as the commit of a real request would
    # (tasks run in-process in the tests).
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            reverse("stripe_events:webhook", args=[endpoint.public_id]),
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature_header(payload, secret, timestamp),
        )


# --- objects in Stripe's shapes, as the sandbox holds them now ---------------------------------------


def refund_object(stripe_refund_id: str, **overrides) -> dict:
    obj = objects.refund(SandboxRefund.objects.select_related("payment_intent").get(stripe_id=stripe_refund_id))
    obj.update(overrides)
    return obj


def charge_object(payment_intent_id: str) -> dict:
    return objects.charge(SandboxPaymentIntent.objects.get(stripe_id=payment_intent_id))


def transfer_object(transfer_id: str) -> dict:
    return objects.transfer(SandboxTransfer.objects.get(stripe_id=transfer_id))


def dispute_object(payment_intent_id: str, *, dispute_id: str = "dp_test_1", status: str = "needs_response") -> dict:
    """A Dispute object (API reference, "The Dispute object")."""
    pi = SandboxPaymentIntent.objects.get(stripe_id=payment_intent_id)
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": pi.amount,
        "balance_transactions": [],
        "charge": pi.charge_id,
        "created": int(time.time()),
        "currency": pi.currency,
        "evidence_details": {"due_by": int(time.time()) + 7 * 86400, "has_evidence": False},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": pi.stripe_id,
        "reason": "fraudulent",
        "status": status,
    }

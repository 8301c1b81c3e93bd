"""The in-process receiver of the events the built-in Stripe sandbox emits.

Contract with the sandbox (settings STRIPE_SANDBOX_WEBHOOK_SECRET, STRIPE_SANDBOX_WEBHOOK_RECEIVER):
the sandbox signs the Event's JSON with the secret (the `Stripe-Signature: t=…,v1=…` header Stripe
sends) and calls `import_string(settings.STRIPE_SANDBOX_WEBHOOK_RECEIVER)(payload, headers)`. The
event goes through exactly the path of /webhooks/stripe/<endpoint>/ (verification included), for the
sandbox's endpoint (created on first use with that secret).
"""

from stripe_events import services


def sandbox_webhook_receive(payload: bytes, headers: dict) -> dict:
    """Ingest one signed event; returns the receiver's 200 body ({"status": "received" | "duplicate",
    "event_id"}). A refused signature or body raises services.SignatureInvalid / PayloadMalformed
    (the HTTP receiver's 400), with nothing stored."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    result = services.stripe_event_ingest(endpoint=services.sandbox_endpoint(), payload=payload, headers=headers)
    return {"status": "received" if result.created else "duplicate", "event_id": result.event.stripe_id}

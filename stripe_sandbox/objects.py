"""Render sandbox rows as the JSON objects Stripe's API returns (the fields our code and the SDK read)."""

from collections.abc import Sequence

from .models import (
    SandboxAccount,
    SandboxBalance,
    SandboxPaymentIntent,
    SandboxRefund,
    SandboxTransfer,
    SandboxTransferReversal,
)

EMBEDDED_LIST_SIZE = 10


def _ts(value) -> int:
    return int(value.timestamp())


def payment_intent(pi: SandboxPaymentIntent, expand: Sequence[str] = ()) -> dict:
    latest_charge: str | dict | None = pi.charge_id
    if pi.charge_id and "latest_charge" in expand:
        latest_charge = charge(pi)
    succeeded = pi.status == "succeeded"
    return {
        "id": pi.stripe_id,
        "object": "payment_intent",
        "amount": pi.amount,
        "amount_capturable": 0,
        "amount_received": pi.amount if succeeded else 0,
        "capture_method": "automatic",
        "confirmation_method": "automatic",
        "created": _ts(pi.created),
        "currency": pi.currency,
        "description": pi.description or None,
        "latest_charge": latest_charge,
        "livemode": False,
        "metadata": pi.metadata,
        "payment_method": pi.payment_method or None,
        "payment_method_types": ["card"],
        "receipt_email": pi.receipt_email or None,
        "status": pi.status,
        "transfer_group": None,
    }


def charge(pi: SandboxPaymentIntent) -> dict:
    return {
        "id": pi.charge_id,
        "object": "charge",
        "amount": pi.amount,
        "amount_captured": pi.amount,
        "amount_refunded": pi.amount_refunded,
        "captured": True,
        "created": _ts(pi.created),
        "currency": pi.currency,
        "disputed": pi.disputed,
        "livemode": False,
        "metadata": pi.metadata,
        "paid": True,
        "payment_intent": pi.stripe_id,
        "payment_method": pi.payment_method or None,
        "receipt_email": pi.receipt_email or None,
        "refunded": pi.amount_refunded == pi.amount,
        "status": "succeeded",
    }


def transfer(tr: SandboxTransfer) -> dict:
    reversals = list(tr.reversals.order_by("-pk")[: EMBEDDED_LIST_SIZE + 1])
    return {
        "id": tr.stripe_id,
        "object": "transfer",
        "amount": tr.amount,
        "amount_reversed": tr.amount_reversed,
        "balance_transaction": None,
        "created": _ts(tr.created),
        "currency": tr.currency,
        "description": tr.description or None,
        "destination": tr.destination.stripe_id,
        "livemode": False,
        "metadata": tr.metadata,
        "reversals": {
            "object": "list",
            "data": [transfer_reversal(item, tr) for item in reversals[:EMBEDDED_LIST_SIZE]],
            "has_more": len(reversals) > EMBEDDED_LIST_SIZE,
            "total_count": tr.reversals.count(),
            "url": f"/v1/transfers/{tr.stripe_id}/reversals",
        },
        "reversed": tr.amount_reversed == tr.amount,
        "source_transaction": tr.source_transaction or None,
        "source_type": "card",
        "transfer_group": tr.transfer_group or None,
    }


def transfer_reversal(reversal: SandboxTransferReversal, tr: SandboxTransfer | None = None) -> dict:
    tr = tr or reversal.transfer
    return {
        "id": reversal.stripe_id,
        "object": "transfer_reversal",
        "amount": reversal.amount,
        "balance_transaction": None,
        "created": _ts(reversal.created),
        "currency": reversal.currency,
        "destination_payment_refund": None,
        "metadata": reversal.metadata,
        "source_refund": None,
        "transfer": tr.stripe_id,
    }


def refund(rf: SandboxRefund) -> dict:
    body = {
        "id": rf.stripe_id,
        "object": "refund",
        "amount": rf.amount,
        "balance_transaction": None,
        "charge": rf.payment_intent.charge_id,
        "created": _ts(rf.created),
        "currency": rf.currency,
        "metadata": rf.metadata,
        "payment_intent": rf.payment_intent.stripe_id,
        "reason": rf.reason or None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": rf.status,
        "transfer_reversal": None,
    }
    if rf.status == "failed":
        body["failure_reason"] = rf.failure_reason
        body["failure_balance_transaction"] = None
    return body


def balance(account: SandboxAccount) -> dict:
    rows = list(SandboxBalance.objects.filter(account=account).order_by("currency"))
    if not rows:
        rows = [SandboxBalance(account=account, currency=account.default_currency, available=0)]
    return {
        "object": "balance",
        "available": [
            {"amount": row.available, "currency": row.currency, "source_types": {"card": row.available}} for row in rows
        ],
        "pending": [{"amount": 0, "currency": row.currency, "source_types": {"card": 0}} for row in rows],
        "livemode": False,
    }


def page(queryset, *, limit: int, starting_after, ending_before, url: str, render) -> dict:
    """A Stripe list: newest first, cursor ids are Stripe ids of items of the same list."""
    if ending_before is not None:
        items = list(queryset.filter(pk__gt=ending_before.pk).order_by("pk")[: limit + 1])
        has_more = len(items) > limit
        items = list(reversed(items[:limit]))
    else:
        ordered = queryset.order_by("-pk")
        if starting_after is not None:
            ordered = ordered.filter(pk__lt=starting_after.pk)
        items = list(ordered[: limit + 1])
        has_more = len(items) > limit
        items = items[:limit]
    return {"object": "list", "data": [render(item) for item in items], "has_more": has_more, "url": url}

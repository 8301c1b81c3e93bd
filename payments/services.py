"""Writes to the payments books that no refund step makes: what Stripe reports about a charge itself."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q

from payments.models import DISPUTE_CLOSED_STATUSES, PaymentTransaction


def payment_dispute_record(
    *,
    charge_id: str,
    payment_intent_id: str,
    dispute_id: str,
    status: str,
    reason: str,
    amount: int,
    reported_at: dt.datetime,
) -> tuple[PaymentTransaction | None, bool]:
    """(payment, changed): the charge's dispute as of `reported_at` (Stripe's `created` of the event
    that reported it). A report older than the one applied changes nothing, so charge.dispute.created
    arriving after charge.dispute.closed does not reopen the dispute; a repeat changes nothing either."""
    match = Q()
    if payment_intent_id:
        match |= Q(gateway_transaction_id=payment_intent_id)
    if charge_id:
        match |= Q(gateway_charge_id=charge_id)
    if not match:
        return None, False
    with transaction.atomic():
        payment = PaymentTransaction.objects.select_for_update().filter(match).first()
        if payment is None:
            return None, False
        if payment.dispute_updated_at is not None and reported_at < payment.dispute_updated_at:
            return payment, False
        if (
            reported_at == payment.dispute_updated_at
            and dispute_id == payment.dispute_id
            and payment.dispute_status in DISPUTE_CLOSED_STATUSES
            and status not in DISPUTE_CLOSED_STATUSES
        ):
            # Events carry whole seconds: created and closed in the same second arrive in any order,
            # and a decided dispute never reopens.
            return payment, False
        unchanged = (payment.dispute_id, payment.dispute_status) == (dispute_id, status)
        payment.dispute_id = dispute_id
        payment.dispute_status = status
        payment.dispute_reason = reason or ""
        payment.dispute_amount = amount
        payment.dispute_updated_at = reported_at
        payment.save(
            update_fields=[
                "dispute_id",
                "dispute_status",
                "dispute_reason",
                "dispute_amount",
                "dispute_updated_at",
                "date_last_modified",
            ]
        )
    return payment, not unchanged

"""What Stripe tells us on its own (its webhooks, stripe_events), applied to the refund domain.

A Stripe event is only a trigger: every function here reads what Stripe holds through
payments.gateway (or runs the engine, which does) and reconciles our rows with it, so a duplicated,
late or out-of-order event changes nothing twice and polling stays the same code path.

- `shopper_refund_sync`: one of our shopper refunds changed at Stripe. A PROCESSING refund gets an
  engine pass now (its pending re-read settles it without waiting for the next poll); a refund whose
  shopper refund had succeeded and that Stripe now reports failed (a closed or expired card) goes
  FAILED for an operator (see `_shopper_refund_failed_late`).
- `stripe_outside_refunds_record`: refunds of a payment made outside the product (the Stripe
  Dashboard) are recorded EXTERNAL against the bag, so what is still refundable stays true, and
  flagged with a finding.
- `stripe_outside_reversals_record`: transfer reversals made outside the product are flagged with
  their amounts (a reversal belongs to no refund of ours, so there is no step row to put it on).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from payments.gateway import RefundResult, get_gateway
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds import announcements as notifications
from refunds.errors import RefundErrorCode
from refunds.models import (
    Bag,
    ReconciliationFinding,
    Refund,
    RefundError,
    RefundEvent,
    RefundSource,
    RefundStatus,
    RefundStep,
)
from refunds.services.bags import bag_update_refund_state
from refunds.services.engine import enqueue_processing, refund_process
from refunds.services.events import event_record
from refunds.services.findings import finding_open
from refunds.services.record import refund_record
from refunds.services.steps import REFUND_STATUSES_WITHOUT_MONEY, stripe_object_refund_id
from violet_refunds.exceptions import ApplicationError
from violet_refunds.locks import try_exclusive
from violet_refunds.money import format_amount

# The actor name of changes Stripe's own events make (the audit trail's `actor`).
STRIPE_ACTOR = "stripe"
# Statuses in which the shopper's refund had been recorded as paid.
SHOPPER_PAID_STATUSES = (RefundStatus.COMPLETED, RefundStatus.PARTIALLY_COMPLETED)
# Stripe refund statuses after which a refund never changes again, except succeeded -> failed.
SHOPPER_REFUND_FINAL_STATUSES = frozenset({"succeeded", *REFUND_STATUSES_WITHOUT_MONEY})


class RefundBusy(Exception):
    """The engine or an operator holds the refund right now: try the event again shortly."""

    transient = True


@dataclass(frozen=True)
class StripeChange:
    """What applying one Stripe signal did, in words; `acted` False: nothing of ours was concerned."""

    outcome: str
    refunds: tuple[Refund, ...] = ()
    acted: bool = True


def shopper_refund_sync(*, stripe_refund_id: str, refund_id: int | None) -> StripeChange:
    """Stripe says the refund `stripe_refund_id` (metadata `refund_id` when it carries ours) changed."""
    shopper = (
        ShopperRefund.objects.select_related("refund", "payment_transaction")
        .filter(gateway_refund_id=stripe_refund_id)
        .first()
    )
    if shopper is None and refund_id is not None:
        shopper = (
            ShopperRefund.objects.select_related("refund", "payment_transaction").filter(refund_id=refund_id).first()
        )
    if shopper is None:
        return StripeChange(f"No shopper refund here is {stripe_refund_id} (refund id {refund_id}).", acted=False)
    refund = shopper.refund
    if refund.status == RefundStatus.PROCESSING and _still_pending_at_stripe(shopper):
        # refund.created / charge.refunded for a refund Stripe accepted as pending: the engine's
        # scheduled re-read stays as it is. A pass here would only reschedule it (and, with tasks
        # run in-process, the rescheduled task would run at once, again and again).
        return StripeChange(
            f"Refund {refund.pk}: {shopper.gateway_refund_id} is still pending at Stripe, as recorded; "
            "the engine's scheduled re-read stays.",
            (refund,),
        )
    settled_pending = shopper.status == ShopperRefund.Status.PENDING and bool(shopper.gateway_refund_id)
    if (
        refund.status == RefundStatus.PROCESSING
        and not settled_pending
        and refund.next_attempt_at is not None
        and refund.next_attempt_at > timezone.now()
    ):
        # The engine is waiting out a backoff after an error (a lost answer, a 5xx): its scheduled
        # pass looks this refund up at Stripe first. A pass now would run before next_attempt_at and
        # could send the steps left early (issue #13 V2: attempts keep their backoff).
        return StripeChange(
            f"Refund {refund.pk}: a retry is scheduled at {refund.next_attempt_at.isoformat()}; that pass looks "
            f"{stripe_refund_id} up at Stripe.",
            (refund,),
        )
    if refund.status == RefundStatus.PROCESSING:
        # The engine's own pass: it re-reads the pending refund at Stripe (or looks the step up) and
        # decides, exactly as the next scheduled poll would have.
        outcome = refund_process(refund_id=refund.pk)
        if outcome.retry_in is not None:
            enqueue_processing(refund.pk, countdown=outcome.retry_in, due=outcome.due)
        if outcome.status == "LOCKED":
            return StripeChange(
                f"Refund {refund.pk} is being processed right now; that pass reads Stripe's answer.", (refund,)
            )
        return StripeChange(f"Refund {refund.pk}: an engine pass ran, the refund is {outcome.status}.", (refund,))
    if shopper.status == ShopperRefund.Status.SUCCEEDED and refund.status in SHOPPER_PAID_STATUSES:
        assert shopper.gateway_refund_id is not None  # SUCCEEDED is only ever recorded from Stripe's answer
        result = get_gateway().retrieve_refund(shopper.gateway_refund_id)
        if result.status in REFUND_STATUSES_WITHOUT_MONEY:
            return _shopper_refund_failed_late(refund, shopper, result)
        return StripeChange(
            f"Refund {refund.pk}: {result.id} is {result.status} at Stripe, as recorded; nothing changes.", (refund,)
        )
    return StripeChange(
        f"Refund {refund.pk} is {refund.status} (shopper refund {shopper.status}); nothing changes.", (refund,)
    )


def _still_pending_at_stripe(shopper: ShopperRefund) -> bool:
    """Whether the shopper refund was recorded pending at Stripe (the engine holds its id) and Stripe
    still says pending now. Anything else (settled, or no answer recorded yet) needs an engine pass."""
    if shopper.status != ShopperRefund.Status.PENDING or not shopper.gateway_refund_id:
        return False
    # The engine's own reading (steps._apply_shopper_result): any status but a final one is pending.
    return get_gateway().retrieve_refund(shopper.gateway_refund_id).status not in SHOPPER_REFUND_FINAL_STATUSES


def _shopper_refund_failed_late(refund: Refund, shopper: ShopperRefund, result: RefundResult) -> StripeChange:
    """Stripe reports failed (or canceled) a shopper refund it had reported succeeded.

    The refund becomes FAILED, as the engine would have decided had it known (docs/architecture.md:
    "shopper refund failed for good: FAILED"; FAILED says Stripe holds nothing live for the failed
    step, which is now true). The transfers' reversals stay COMPLETE: the merchant and channel have
    given their share back and the network holds it while the shopper is unpaid, which the
    RefundError, the audit event and the refund page's money position say. The channel is told
    REFUND_FAILED (once: the outbox's dedupe key per status and retry round)."""
    with try_exclusive("refund", refund.pk) as acquired:
        if not acquired:
            raise RefundBusy(f"Refund {refund.pk} is being worked on; the event is tried again.")
        with transaction.atomic():
            current = Refund.objects.select_for_update().get(pk=refund.pk)
            reason = result.failure_reason or result.status
            updated = ShopperRefund.objects.filter(pk=shopper.pk, status=ShopperRefund.Status.SUCCEEDED).update(
                status=ShopperRefund.Status.FAILED,
                failure_reason=result.failure_reason or "",
                error_message=f"Stripe reported {result.id} {result.status} after it had succeeded.",
                date_last_modified=timezone.now(),
            )
            if not updated:
                return StripeChange(f"Refund {current.pk}: {result.id} is already recorded as failed.", (current,))
            PaymentTransaction.objects.filter(pk=shopper.payment_transaction_id).update(
                amount_refunded=F("amount_refunded") - shopper.amount, date_last_modified=timezone.now()
            )
            reversed_rows = list(
                TransferReversal.objects.filter(refund=current, status=TransferReversal.Status.COMPLETE)
                .select_related("transfer")
                .order_by("pk")
            )
            consequences = _money_consequences(shopper, reversed_rows)
            message = (
                f"Stripe reported the shopper's refund {result.id} {result.status} ({reason}) after it had "
                f"succeeded: the shopper has not been refunded. {consequences}"
            )
            RefundError.objects.create(
                refund=current,
                error_code=RefundErrorCode.SHOPPER_REFUND_FAILED,
                error_message=message,
                step=RefundStep.SHOPPER_REFUND,
                gateway_code=result.failure_reason or "",
            )
            event_record(
                current,
                RefundEvent.Kind.STEP_FAILED,
                actor=STRIPE_ACTOR,
                message=f"{RefundStep.SHOPPER_REFUND}: {result.id} {result.status} after succeeding ({reason})",
                data={
                    "step": RefundStep.SHOPPER_REFUND,
                    "gateway_id": result.id,
                    "failure_reason": result.failure_reason,
                    "shopper_unpaid": shopper.amount,
                    "currency": shopper.currency,
                    "reversed": [
                        {"recipient": r.transfer.recipient, "amount": r.amount, "currency": r.currency}
                        for r in reversed_rows
                    ],
                },
            )
            previous = current.status
            current.status = RefundStatus.FAILED
            current.date_completed = None
            current.save(update_fields=["status", "date_completed", "date_last_modified"])
            event_record(
                current,
                RefundEvent.Kind.STATUS_CHANGED,
                actor=STRIPE_ACTOR,
                from_status=previous,
                to_status=RefundStatus.FAILED,
                message=message,
            )
            notifications.refund_event_emit(current)
            bag_update_refund_state(bag_id=current.bag_id)
    return StripeChange(f"Refund {current.pk}: {message} The refund is FAILED for an operator.", (current,))


def _money_consequences(shopper: ShopperRefund, reversed_rows: list[TransferReversal]) -> str:
    unpaid = f"{format_amount(shopper.amount, shopper.currency)} is owed to the shopper"
    if not reversed_rows:
        return f"{unpaid}; no transfer was reversed for it."
    parts = [
        f"the {'merchant' if r.transfer.recipient == Recipient.MERCHANT else 'channel'}'s transfer was reversed by "
        f"{format_amount(r.amount, r.currency)} ({r.gateway_reversal_id})"
        for r in reversed_rows
    ]
    return (
        f"{unpaid}; {' and '.join(parts)}, so the network holds that money (Stripe returned the refund to its balance)."
    )


def stripe_outside_refunds_record(*, payment_intent_id: str) -> StripeChange:
    """Record the payment's refunds made outside the product, as Stripe lists them now."""
    payment = PaymentTransaction.objects.filter(gateway_transaction_id=payment_intent_id).first()
    if payment is None:
        return StripeChange(f"{payment_intent_id} is not a payment of ours.", acted=False)
    at_stripe = [
        found
        for found in get_gateway().list_refunds(payment_intent_id=payment_intent_id)
        if stripe_object_refund_id(found) is None
    ]
    outside = [found for found in at_stripe if found.status not in REFUND_STATUSES_WITHOUT_MONEY]
    outcomes, refunds = [], []
    for found in sorted(outside, key=lambda r: r.id):
        refund, outcome = _outside_refund_record(payment, found)
        outcomes.append(outcome)
        if refund is not None:
            refunds.append(refund)
    for found in sorted(at_stripe, key=lambda r: r.id):
        if found.status in REFUND_STATUSES_WITHOUT_MONEY:
            flagged = _outside_refund_failed(payment, found)
            if flagged is not None:
                outcomes.append(flagged[1])
                refunds.append(flagged[0])
    if not outcomes:
        return StripeChange(f"{payment_intent_id}: every refund Stripe holds was made by us.", acted=False)
    return StripeChange(" ".join(outcomes), tuple(refunds))


def _outside_refund_failed(payment: PaymentTransaction, found: RefundResult) -> tuple[Refund, str] | None:
    """A refund made outside the product that we recorded EXTERNAL, and that Stripe now reports
    failed: the shopper was not paid after all. An operator decides (the EXTERNAL refund still counts
    against the bag); the finding says so, once."""
    recorded = (
        Refund.objects.filter(bag__order_id=payment.order_id, external_id=f"stripe:{found.id}")
        .select_related("bag")
        .first()
    )
    if recorded is None:
        return None
    amount = format_amount(found.amount, found.currency)
    _finding, created = finding_open(
        key=f"stripe-outside-refund-failed:{found.id}",
        origin=ReconciliationFinding.Origin.STRIPE_EVENT,
        kind="outside_refund_failed",
        detail=f"{found.id}: {amount} refunded at Stripe outside the product, recorded as EXTERNAL refund "
        f"{recorded.pk}, is now {found.status} at Stripe ({found.failure_reason or 'no reason given'}): the shopper "
        "was not refunded, yet the EXTERNAL record counts against the bag. Pay the shopper another way (the record "
        "then stays true) and say how when resolving this finding.",
        refund=recorded,
    )
    if created:
        PaymentTransaction.objects.filter(pk=payment.pk).update(
            amount_refunded=F("amount_refunded") - found.amount, date_last_modified=timezone.now()
        )
    return recorded, f"{found.id} ({amount}) made outside the product is {found.status} at Stripe: flagged."


def _outside_refund_record(payment: PaymentTransaction, found: RefundResult) -> tuple[Refund | None, str]:
    external_id = f"stripe:{found.id}"
    amount = format_amount(found.amount, found.currency)
    bags = list(Bag.objects.filter(order_id=payment.order_id).order_by("pk"))
    key = f"stripe-outside-refund:{found.id}"
    if len(bags) != 1:
        finding_open(
            key=key,
            origin=ReconciliationFinding.Origin.STRIPE_EVENT,
            kind="outside_refund_unassigned",
            detail=f"{found.id}: {amount} refunded at Stripe outside the product on {payment.gateway_transaction_id}, "
            f"whose order has {len(bags)} bags; record it against the right bag (Mark as external on a refund "
            "recorded for it) and resolve this finding.",
        )
        return None, f"{found.id} ({amount}) made outside the product: the order has {len(bags)} bags, flagged."
    bag = bags[0]
    try:
        with transaction.atomic():
            result = refund_record(
                bag=bag,
                source=RefundSource.STRIPE_DASHBOARD,
                actor=STRIPE_ACTOR,
                amount=found.amount,
                currency=found.currency,
                external_id=external_id,
                reason=f"Refunded at Stripe outside the product ({found.id})",
                external=True,
            )
            if result.created:
                PaymentTransaction.objects.filter(pk=payment.pk).update(
                    amount_refunded=F("amount_refunded") + found.amount, date_last_modified=timezone.now()
                )
                bag_update_refund_state(bag_id=bag.pk)
    except ApplicationError as exc:
        finding_open(
            key=key,
            origin=ReconciliationFinding.Origin.STRIPE_EVENT,
            kind="outside_refund_unrecorded",
            detail=f"{found.id}: {amount} refunded at Stripe outside the product could not be recorded against "
            f"bag {bag.pk}: {exc.message}",
            bag=bag,
        )
        return None, f"{found.id} ({amount}) made outside the product could not be recorded: {exc.message} Flagged."
    finding_open(
        key=key,
        origin=ReconciliationFinding.Origin.STRIPE_EVENT,
        kind="outside_refund",
        detail=f"{found.id}: {amount} refunded at Stripe outside the product, recorded as EXTERNAL refund "
        f"{result.refund.pk} of bag {bag.pk}. Its transfers were not reversed: recover the merchant's and channel's "
        "shares if they are owed.",
        refund=result.refund,
    )
    what = "recorded as" if result.created else "already recorded as"
    return result.refund, f"{found.id} ({amount}) made outside the product: {what} EXTERNAL refund {result.refund.pk}."


def stripe_outside_reversals_record(*, transfer_id: str) -> StripeChange:
    """Flag the transfer's reversals made outside the product (their amounts are in the finding)."""
    transfer = Transfer.objects.select_related("bag").filter(gateway_transfer_id=transfer_id).first()
    if transfer is None:
        return StripeChange(f"{transfer_id} is not a transfer of ours.", acted=False)
    outside = [r for r in get_gateway().list_transfer_reversals(transfer_id) if stripe_object_refund_id(r) is None]
    if not outside:
        return StripeChange(f"{transfer_id}: every reversal Stripe holds was made by us.", acted=False)
    party = "merchant" if transfer.recipient == Recipient.MERCHANT else "channel"
    outcomes = []
    for reversal in sorted(outside, key=lambda r: r.id):
        amount = format_amount(reversal.amount, reversal.currency)
        _finding, created = finding_open(
            key=f"stripe-outside-reversal:{reversal.id}",
            origin=ReconciliationFinding.Origin.STRIPE_EVENT,
            kind="outside_reversal",
            detail=f"{reversal.id}: the {party}'s transfer {transfer_id} of bag {transfer.bag_id} was reversed by "
            f"{amount} at Stripe outside the product, for no refund here. Find out why; if the shopper is owed it, "
            "record the refund, otherwise return the money to the account.",
            bag=transfer.bag,
        )
        outcomes.append(
            f"{reversal.id} ({amount}) reversed outside the product: {'flagged' if created else 'already flagged'}."
        )
    return StripeChange(" ".join(outcomes))

"""Refund services: every write to the refund domain goes through these functions.

Entry points (platform signals, merchant notices, channel API, operators) call `refund_record`;
the `process_refund` task calls `refund_process`, which moves the money through Stripe exactly once;
operators repair with `refund_retry`, `refund_mark_external`, `refund_cancel`, `refund_error_resolve`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Sum, Value, When
from django.utils import timezone

from payments import splits
from payments.gateway import (
    IdempotencyConflictError,
    PermanentGatewayError,
    TransientGatewayError,
    get_gateway,
)
from payments.models import PaymentTransaction, Recipient, ShopperRefund, Transfer, TransferReversal
from refunds import announcements as notifications
from refunds.amounts import bag_refundable_remaining, bag_refunded_parts, bag_totals
from refunds.errors import RefundErrorCode, code_for_gateway_error
from refunds.models import (
    Bag,
    BagStatus,
    FinancialStatus,
    Order,
    OrderSku,
    OrderStatus,
    ReasonCode,
    Refund,
    RefundError,
    RefundEvent,
    RefundSku,
    RefundSource,
    RefundStatus,
    RefundStep,
)
from violet_refunds.crashpoints import crash_point
from violet_refunds.exceptions import InvalidTransition, ValidationFailed
from violet_refunds.locks import try_exclusive
from violet_refunds.money import AmountParts

logger = logging.getLogger(__name__)

# Spec section 2.2: the two doc generations agree a bag IN_PROGRESS or REFUNDED cannot be refunded
# and disagree on CANCELED. The seeds make cancellation *the* refund signal on Ecwid, Wix (old
# orders) and SFCC Option 1, so a CANCELED bag must stay refundable.
REFUNDABLE_BAG_STATUSES = frozenset(
    {
        BagStatus.ACCEPTED,
        BagStatus.SUBMITTED,
        BagStatus.COMPLETED,
        BagStatus.PARTIALLY_REFUNDED,
        BagStatus.CANCELED,
    }
)
# Refund statuses whose money moved (to the shopper) and which count toward the bag's refunded state.
MONEY_MOVED_STATUSES = (
    RefundStatus.COMPLETED,
    RefundStatus.PARTIALLY_COMPLETED,
    RefundStatus.EXTERNAL,
)


# --------------------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundSkuLine:
    order_sku_id: int
    quantity: int
    amount: int | None = None


@dataclass(frozen=True)
class RecordResult:
    refund: Refund
    created: bool


def _existing_refund(bag: Bag, external_id: str | None, request_key: str | None) -> Refund | None:
    if external_id:
        found = Refund.objects.filter(bag=bag, external_id=external_id).first()
        if found:
            return found
    if request_key:
        return Refund.objects.filter(bag=bag, request_key=request_key).first()
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def refund_record(
    *,
    bag: Bag,
    source: str,
    actor: str,
    amount: int | None = None,
    sub_total_amount: int | None = None,
    shipping_amount: int | None = None,
    tax_amount: int | None = None,
    shipping_tax_amount: int = 0,
    skus: Sequence[RefundSkuLine] = (),
    external_id: str | None = None,
    request_key: str | None = None,
    currency: str | None = None,
    reason: str = "",
    reason_code: str = ReasonCode.OTHER,
    restock_items: bool = False,
    notify_customer: bool = False,
    shipping_full_refund: bool = False,
    inbound_event=None,
    user=None,
    enqueue: bool = True,
) -> RecordResult:
    """Record a refund of (part of) a bag and enqueue its processing. Idempotent on
    (bag, external_id) and (bag, request_key): a repeat returns the first refund unchanged."""
    external_id = (external_id or "").strip() or None
    request_key = (request_key or "").strip() or None
    existing = _existing_refund(bag, external_id, request_key)
    if existing:
        return RecordResult(refund=existing, created=False)

    if source not in RefundSource.values:
        raise ValidationFailed(f"Unknown refund source {source!r}.", field_errors={"source": ["invalid"]})
    if reason_code not in ReasonCode.values:
        raise ValidationFailed(
            "Unknown reason code.",
            field_errors={"reason_code": [f"Must be one of {', '.join(ReasonCode.values)}."]},
        )
    if len(reason or "") > 255:
        raise ValidationFailed("Reason is too long.", field_errors={"reason": ["At most 255 characters."]})

    try:
        with transaction.atomic():
            # Serialize every refund of this bag: "what is left" must not be read by two writers at once.
            locked_bag = Bag.objects.select_for_update().get(pk=bag.pk)
            existing = _existing_refund(locked_bag, external_id, request_key)
            if existing:
                return RecordResult(refund=existing, created=False)
            refund = _create_refund(
                bag=locked_bag,
                source=source,
                actor=actor,
                amount=amount,
                sub_total_amount=sub_total_amount,
                shipping_amount=shipping_amount,
                tax_amount=tax_amount,
                shipping_tax_amount=shipping_tax_amount,
                skus=skus,
                external_id=external_id,
                request_key=request_key,
                currency=currency,
                reason=reason or "",
                reason_code=reason_code,
                restock_items=restock_items,
                notify_customer=notify_customer,
                shipping_full_refund=shipping_full_refund,
                inbound_event=inbound_event,
                user=user,
            )
            notifications.refund_event_emit(refund)  # outbox: REFUND_PROCESSING, same transaction
            if enqueue:  # False only for bulk imports/demo data; the stuck sweep picks those up
                transaction.on_commit(lambda: _enqueue_processing(refund.pk))
    except IntegrityError:
        # A concurrent writer recorded the same external id / request key first: return theirs.
        existing = _existing_refund(bag, external_id, request_key)
        if existing:
            return RecordResult(refund=existing, created=False)
        raise
    return RecordResult(refund=refund, created=True)


def _create_refund(*, bag: Bag, skus: Sequence[RefundSkuLine], **fields) -> Refund:
    errors: dict[str, list[str]] = {}
    if bag.status not in REFUNDABLE_BAG_STATUSES:
        raise ValidationFailed(
            f"Bag {bag.pk} is {bag.status} and cannot be refunded.",
            field_errors={"bag": [f"Bag status {bag.status} is not refundable."]},
        )
    currency = (fields["currency"] or bag.currency).upper()
    if currency != bag.currency:
        errors["currency"] = [f"The bag is in {bag.currency}; a refund in {currency} is not possible."]

    remaining = bag_refundable_remaining(bag)
    sku_rows = _validate_sku_lines(bag, skus, remaining, errors)
    for name in ("amount", "sub_total_amount", "shipping_amount", "tax_amount", "shipping_tax_amount"):
        value = fields.get(name)
        if value is not None and (not _is_int(value) or value < 0):
            errors[name] = ["Must be a non-negative integer amount in minor units."]
    if errors:
        raise ValidationFailed("The refund is invalid.", field_errors=errors)

    parts = _resolve_parts(
        amount=fields["amount"],
        sub_total=fields["sub_total_amount"],
        shipping=fields["shipping_amount"],
        tax=fields["tax_amount"],
        sku_rows=sku_rows,
        remaining=remaining,
        errors=errors,
    )
    if errors:
        raise ValidationFailed("The refund is invalid.", field_errors=errors)
    if parts.total <= 0:
        raise ValidationFailed(
            "Nothing to refund.", field_errors={"amount": ["The refund amount must be greater than 0."]}
        )
    if fields["shipping_tax_amount"] > parts.tax:
        raise ValidationFailed(
            "Shipping tax exceeds the refunded tax.",
            field_errors={"shipping_tax_amount": ["Cannot exceed tax_amount."]},
        )

    if (
        not sku_rows
        and not skus
        and fields["amount"] is None
        and not any(fields[n] is not None for n in ("sub_total_amount", "shipping_amount", "tax_amount"))
    ):
        # A full refund of what is left returns every remaining item.
        sku_rows = [
            (sku, qty, None) for sku in OrderSku.objects.filter(bag=bag) if (qty := remaining.skus.get(sku.pk, 0)) > 0
        ]

    refund = Refund.objects.create(
        bag=bag,
        external_id=fields["external_id"],
        request_key=fields["request_key"],
        status=RefundStatus.PROCESSING,
        amount=parts.total,
        sub_total_amount=parts.sub_total,
        shipping_amount=parts.shipping,
        shipping_tax_amount=fields["shipping_tax_amount"],
        tax_amount=parts.tax,
        shipping_full_refund=fields["shipping_full_refund"]
        or (parts.shipping > 0 and parts.shipping == bag.shipping_total),
        refund_currency=currency,
        reason=fields["reason"],
        reason_code=fields["reason_code"],
        restock_items=fields["restock_items"],
        notify_customer=fields["notify_customer"],
        source=fields["source"],
        inbound_event=fields["inbound_event"],
        created_by=fields["user"],
        next_attempt_at=timezone.now(),
    )
    for sku, quantity, line_amount in sku_rows:
        RefundSku.objects.create(
            refund=refund,
            order_sku=sku,
            quantity_refunded=quantity,
            amount_refunded=line_amount,
            external_id=sku.external_id,
        )
        # The CHECK (quantity_refunded <= quantity) backs this up in the database.
        OrderSku.objects.filter(pk=sku.pk).update(quantity_refunded=F("quantity_refunded") + quantity)
    _event(
        refund,
        RefundEvent.Kind.RECORDED,
        actor=fields["actor"],
        user=fields["user"],
        to_status=RefundStatus.PROCESSING,
        message=f"Recorded from {refund.get_source_display()}.",
        data={"amount": refund.amount, "currency": currency, "external_id": refund.external_id},
    )
    return refund


def _validate_sku_lines(bag, skus, remaining, errors) -> list[tuple[OrderSku, int, int | None]]:
    if not skus:
        return []
    by_id = {sku.pk: sku for sku in OrderSku.objects.filter(bag=bag)}
    rows: list[tuple[OrderSku, int, int | None]] = []
    problems: list[str] = []
    seen: set[int] = set()
    for line in skus:
        sku = by_id.get(line.order_sku_id)
        if sku is None:
            problems.append(f"order_sku_id {line.order_sku_id} does not belong to this bag.")
            continue
        if line.order_sku_id in seen:
            problems.append(f"order_sku_id {line.order_sku_id} is listed twice.")
            continue
        seen.add(line.order_sku_id)
        if not _is_int(line.quantity) or line.quantity < 1:
            problems.append(f"quantity_refunded for order_sku_id {sku.pk} must be at least 1.")
            continue
        left = remaining.skus.get(sku.pk, 0)
        if line.quantity > left:
            problems.append(f"quantity_refunded {line.quantity} for order_sku_id {sku.pk} exceeds the {left} left.")
            continue
        if line.amount is not None and (not _is_int(line.amount) or line.amount < 0):
            problems.append(f"amount_refunded for order_sku_id {sku.pk} must be a non-negative integer.")
            continue
        if line.amount is not None and line.amount > sku.price * line.quantity:
            problems.append(
                f"amount_refunded for order_sku_id {sku.pk} exceeds price x quantity ({sku.price * line.quantity})."
            )
            continue
        rows.append((sku, line.quantity, line.amount))
    if problems:
        errors["skus"] = problems
    return rows


def _resolve_parts(*, amount, sub_total, shipping, tax, sku_rows, remaining, errors) -> AmountParts:
    left = remaining.parts
    parts_given = any(v is not None for v in (sub_total, shipping, tax))
    if sub_total is None and sku_rows:
        sub_total = sum(a if a is not None else sku.price * q for sku, q, a in sku_rows)
        sub_total = min(sub_total, left.sub_total)
        parts_given = True
    if parts_given:
        parts = AmountParts(sub_total=sub_total or 0, shipping=shipping or 0, tax=tax or 0)
        if amount is not None and amount != parts.total:
            errors["amount"] = [f"amount {amount} does not equal sub_total + shipping + tax ({parts.total})."]
    elif amount is not None:
        if amount > left.total:
            errors["amount"] = [f"amount {amount} exceeds the {left.total} still refundable on this bag."]
            return AmountParts.ZERO
        if amount <= 0:
            errors["amount"] = ["The refund amount must be greater than 0."]
            return AmountParts.ZERO
        parts = splits.split_amount_pro_rata(amount, left)
    else:
        parts = left
    for name, value, limit in (
        ("sub_total_amount", parts.sub_total, left.sub_total),
        ("shipping_amount", parts.shipping, left.shipping),
        ("tax_amount", parts.tax, left.tax),
    ):
        if value > limit:
            errors[name] = [f"{value} exceeds the {limit} still refundable."]
    return parts


def _enqueue_processing(refund_id: int, countdown: float | None = None) -> None:
    from refunds.tasks import process_refund

    try:
        if countdown:
            process_refund.apply_async((refund_id,), countdown=countdown)
        else:
            process_refund.delay(refund_id)
    except Exception:  # broker down: the stuck-refund sweep will pick it up from the database
        logger.exception("Could not enqueue refund %s; the sweep will retry it", refund_id)


def _event(refund, kind, *, actor, user=None, from_status="", to_status="", message="", data=None):
    return RefundEvent.objects.create(
        refund=refund,
        kind=kind,
        actor=actor,
        user=user,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )


# --------------------------------------------------------------------------------------------------
# Processing
# --------------------------------------------------------------------------------------------------

WORKER = "worker"


@dataclass(frozen=True)
class ProcessOutcome:
    status: str
    retry_in: float | None = None  # seconds until the task should run again, if at all
    detail: str = ""


def _backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter, always below the broker's visibility timeout."""
    cap = min(
        settings.REFUND_RETRY_BACKOFF_MAX_SECONDS,
        settings.REFUND_RETRY_BACKOFF_BASE_SECONDS * (2 ** max(attempt - 1, 0)),
        max(settings.CELERY_VISIBILITY_TIMEOUT - 60, 1),
    )
    return max(0.5, random.uniform(cap / 2, cap))


def _pending_recheck_seconds(attempt: int) -> float:
    """When to re-read a refund Stripe holds as pending; below the visibility timeout like every
    countdown, or Redis would deliver a second copy while the first only waits."""
    return float(
        min(
            settings.REFUND_RETRY_BACKOFF_MAX_SECONDS,
            30 * max(attempt, 1),
            max(settings.CELERY_VISIBILITY_TIMEOUT - 60, 1),
        )
    )


def refund_process(*, refund_id: int) -> ProcessOutcome:
    """Move the money for one refund: reverse the merchant and channel transfers, then refund the
    shopper. Safe to run any number of times, concurrently or after a crash at any point."""
    with try_exclusive("refund", refund_id) as acquired:
        if not acquired:
            return ProcessOutcome(status="LOCKED", detail="another worker is processing this refund")
        return _process_locked(refund_id)


def _process_locked(refund_id: int) -> ProcessOutcome:
    refund = Refund.objects.select_related("bag", "bag__order", "bag__merchant").filter(pk=refund_id).first()
    if refund is None:
        return ProcessOutcome(status="MISSING")
    if refund.status != RefundStatus.PROCESSING:
        return ProcessOutcome(status=refund.status, detail="nothing to do")

    now = timezone.now()
    Refund.objects.filter(pk=refund.pk).update(
        attempts=F("attempts") + 1, processing_started_at=now, date_last_modified=now
    )
    # Only the holder of the advisory lock writes `attempts`, so the new value is known without a read.
    refund.attempts += 1
    refund.processing_started_at = now
    if refund.attempts == 1:
        _event(refund, RefundEvent.Kind.CLAIMED, actor=WORKER, message="Processing started.")
    if refund.attempts > settings.REFUND_MAX_ATTEMPTS:
        # Every attempt that ends normally records an outcome or schedules a retry within the cap, so
        # getting here means earlier deliveries died mid-way (a poison message with
        # task_reject_on_worker_lost requeues forever): stop and hand it to an operator.
        return _finish(
            refund,
            failed_error=(
                RefundErrorCode.RETRIES_EXHAUSTED,
                f"Processing was interrupted {refund.attempts - 1} times without recording an outcome. "
                "Retrying looks each step up at Stripe before calling again.",
            ),
        )

    plan_error = _ensure_plan(refund)
    if plan_error:
        return _finish(refund, failed_error=plan_error)

    gateway = get_gateway()
    transient: list[str] = []
    reversals = list(
        TransferReversal.objects.filter(refund=refund).select_related("transfer").order_by("transfer__recipient")
    )
    # Merchant first, then channel (design section 4), then the shopper.
    reversals.sort(key=lambda r: 0 if r.transfer.recipient == Recipient.MERCHANT else 1)
    for reversal in reversals:
        if reversal.status == TransferReversal.Status.PENDING:
            problem = _run_reversal(gateway, refund, reversal)
            if problem:
                transient.append(problem)
    if transient:
        return _schedule_retry(refund, transient)

    shopper = ShopperRefund.objects.select_related("payment_transaction").get(refund=refund)
    if shopper.status == ShopperRefund.Status.PENDING:
        problem = _run_shopper_refund(gateway, refund, shopper)
        if problem:
            return _schedule_retry(refund, [problem])
        if shopper.status == ShopperRefund.Status.PENDING:
            # Stripe accepted the refund but it is not final (card refunds can still fail).
            countdown = _pending_recheck_seconds(refund.attempts)
            Refund.objects.filter(pk=refund.pk).update(
                next_attempt_at=timezone.now() + timezone.timedelta(seconds=countdown),
                attempts=F("attempts") - 1,  # waiting on Stripe is not a failed attempt
            )
            return ProcessOutcome(status=RefundStatus.PROCESSING, retry_in=countdown, detail="pending at Stripe")
    return _finish(refund)


def _ensure_plan(refund: Refund) -> tuple[RefundErrorCode, str] | None:
    """Create the step rows (reversal per transfer, shopper refund) once, with frozen amounts and
    idempotency keys, so every later attempt repeats exactly the same Stripe calls."""
    if ShopperRefund.objects.filter(refund=refund).exists():
        return None
    payment = PaymentTransaction.objects.filter(order_id=refund.bag.order_id).first()
    if payment is None:
        return (RefundErrorCode.MISSING_PAYMENT, "The order has no payment transaction to refund.")
    if payment.currency != refund.refund_currency:
        return (
            RefundErrorCode.CURRENCY_MISMATCH,
            f"The payment is in {payment.currency} but the refund is in {refund.refund_currency}.",
        )
    with transaction.atomic():
        bag = Bag.objects.select_for_update().get(pk=refund.bag_id)
        if ShopperRefund.objects.filter(refund=refund).exists():
            return None
        # Refunds already planned (they have their step rows) are what earlier reversals covered.
        before = (
            Refund.objects.filter(bag=bag, shopper_refund__isnull=False)
            .exclude(status=RefundStatus.CANCELED)
            .aggregate(s=Sum("sub_total_amount"), h=Sum("shipping_amount"), t=Sum("tax_amount"))
        )
        refunded_before = AmountParts(
            sub_total=before["s"] or 0, shipping=before["h"] or 0, tax=before["t"] or 0
        )
        this = AmountParts(
            sub_total=refund.sub_total_amount, shipping=refund.shipping_amount, tax=refund.tax_amount
        )
        transfers = {
            t.recipient: t
            for t in Transfer.objects.filter(bag=bag).exclude(
                status__in=[Transfer.Status.FAILED, Transfer.Status.BYPASSED, Transfer.Status.PENDING]
            )
        }
        reversed_before = _reversed_before(transfers.values(), refund)
        try:
            legs = {
                recipient: splits.TransferLeg(
                    amount=transfer.amount,
                    bag_amount=transfer.bag_amount,
                    reversed_before=reversed_before.get(transfer.pk, (0, 0))[0],
                    reversed_before_bag=reversed_before.get(transfer.pk, (0, 0))[1],
                )
                for recipient, transfer in transfers.items()
            }
            plan = splits.plan_reversals(
                bag=bag_totals(bag),
                refunded_before=refunded_before,
                this_refund=this,
                merchant=legs.get(Recipient.MERCHANT),
                channel=legs.get(Recipient.DEVELOPER),
            )
        except ValueError as exc:
            return (RefundErrorCode.INCONSISTENT_AMOUNTS, f"Cannot split this refund across the transfers: {exc}")
        for recipient, leg_plan in ((Recipient.MERCHANT, plan.merchant), (Recipient.DEVELOPER, plan.channel)):
            if leg_plan is None or leg_plan.amount <= 0:
                continue
            transfer = transfers[recipient]
            TransferReversal.objects.create(
                refund=refund,
                transfer=transfer,
                amount=leg_plan.amount,
                bag_amount=leg_plan.bag_amount,
                currency=transfer.currency,
                idempotency_key=_step_key(refund, _reversal_step(recipient)),
            )
        ShopperRefund.objects.create(
            refund=refund,
            payment_transaction=payment,
            amount=refund.amount,
            currency=payment.currency,
            idempotency_key=_step_key(refund, RefundStep.SHOPPER_REFUND),
        )
        _store_reversal_amounts(refund, plan, transfers)
    return None


def _reversed_before(transfers, refund: Refund) -> dict[int, tuple[int, int]]:
    """transfer id -> (amount, bag_amount) that other, not canceled refunds reverse from it."""
    rows = (
        TransferReversal.objects.filter(transfer__in=list(transfers))
        .exclude(refund=refund)
        .exclude(refund__status=RefundStatus.CANCELED)
        .values("transfer_id")
        .annotate(amount=Sum("amount"), bag_amount=Sum("bag_amount"))
    )
    return {row["transfer_id"]: (row["amount"] or 0, row["bag_amount"] or 0) for row in rows}


def _store_reversal_amounts(refund: Refund, plan: splits.ReversalPlan, transfers: dict) -> None:
    values = {"platform_currency": settings.PLATFORM_CURRENCY}
    for prefix, recipient, leg in (
        ("merchant", Recipient.MERCHANT, plan.merchant),
        ("developer", Recipient.DEVELOPER, plan.channel),
    ):
        amount = leg.amount if leg else 0
        currency = transfers[recipient].currency if recipient in transfers else settings.PLATFORM_CURRENCY
        values[f"{prefix}_transfer_reversal_amount_platform_currency"] = amount
        # The USD figure is only known exactly when the transfer itself moved USD.
        values[f"{prefix}_transfer_reversal_amount_usd"] = amount if currency == "USD" else None
        if recipient in transfers:
            values["platform_currency"] = currency
    Refund.objects.filter(pk=refund.pk).update(**values)


def _reversal_step(recipient: str) -> str:
    return RefundStep.MERCHANT_REVERSAL if recipient == Recipient.MERCHANT else RefundStep.CHANNEL_REVERSAL


def _step_key(refund: Refund, step: str, generation: int = 1) -> str:
    """Stripe idempotency key derived from our own ids: the same step of the same refund always
    sends the same key; only an operator retry after a definitive failure moves to a new generation."""
    base = f"refund-{refund.pk}-{step.lower().replace('_', '-')}"
    return base if generation == 1 else f"{base}-g{generation}"


def _metadata(refund: Refund, step: str) -> dict:
    return {"refund_id": str(refund.pk), "bag_id": str(refund.bag_id), "step": step}


def _run_reversal(gateway, refund: Refund, reversal: TransferReversal) -> str | None:
    """One reversal call. Returns a description of a transient problem, or None when the row reached
    a final state (COMPLETE or FAILED)."""
    step = _reversal_step(reversal.transfer.recipient)
    transfer_id = reversal.transfer.gateway_transfer_id
    return _run_step(
        refund,
        reversal,
        step,
        lookup=lambda: gateway.list_transfer_reversals(transfer_id),
        call=lambda key: gateway.reverse_transfer(
            transfer_id=transfer_id, amount=reversal.amount, idempotency_key=key, metadata=_metadata(refund, step)
        ),
        on_success=lambda result, recovered: _complete_reversal(refund, reversal, result.id, step, recovered),
        on_permanent=lambda exc: _fail_step(refund, step, exc, reversal=reversal),
    )


def _run_shopper_refund(gateway, refund: Refund, shopper: ShopperRefund) -> str | None:
    step = RefundStep.SHOPPER_REFUND
    if shopper.gateway_refund_id:
        # Stripe accepted it earlier and said "pending": only its final status is missing.
        try:
            result = gateway.retrieve_refund(shopper.gateway_refund_id)
        except TransientGatewayError as exc:
            return f"{step}: {exc.message}"
        _apply_shopper_result(refund, shopper, result)
        return None
    payment_intent_id = shopper.payment_transaction.gateway_transaction_id
    return _run_step(
        refund,
        shopper,
        step,
        # A failed or canceled refund moved no money and may belong to an earlier key generation
        # (same metadata): it must not pass for this attempt's outcome.
        lookup=lambda: [
            found
            for found in gateway.list_refunds(payment_intent_id=payment_intent_id)
            if found.status not in _REFUND_STATUSES_WITHOUT_MONEY
        ],
        call=lambda key: gateway.refund_payment(
            payment_intent_id=payment_intent_id,
            amount=shopper.amount,
            idempotency_key=key,
            metadata=_metadata(refund, step),
        ),
        on_success=lambda result, recovered: _apply_shopper_result(refund, shopper, result, recovered),
        on_permanent=lambda exc: _fail_step(refund, step, exc, shopper=shopper),
    )


# Stripe refund statuses after which nothing was (or stays) refunded.
_REFUND_STATUSES_WITHOUT_MONEY = frozenset({"failed", "canceled"})

# A transient error whose response Stripe stores under the idempotency key (a 500 from inside the
# endpoint): the same key would replay it forever, so once a look-up proves nothing was created the
# step moves on to a fresh key. Connection errors, timeouts, 429 and 409 are not stored: the same key
# is kept (if the first request is still in flight at Stripe, reusing its key is what prevents a double).
_STORED_TRANSIENT_PREFIX = "transient:5"


def _is_step_object(obj, refund: Refund, step: str) -> bool:
    """A Stripe refund or reversal created for this step of this refund (metadata we always send)."""
    return obj.metadata.get("refund_id") == str(refund.pk) and obj.metadata.get("step") == step


def _run_step(refund, row, step: str, *, lookup, call, on_success, on_permanent) -> str | None:
    model = type(row)
    if row.attempts > 0:
        # An earlier call may have succeeded with its response lost (or its key pruned): look first.
        try:
            found = next(
                (obj for obj in lookup() if _is_step_object(obj, refund, step)),
                None,
            )
        except TransientGatewayError as exc:
            return f"{step}: {exc.message}"
        if found is not None:
            on_success(found, True)
            return None
        if row.error_code.startswith(_STORED_TRANSIENT_PREFIX):
            row.idempotency_key = _next_generation_key(refund, step, row.idempotency_key)
            model.objects.filter(pk=row.pk).update(idempotency_key=row.idempotency_key)
    model.objects.filter(pk=row.pk).update(attempts=F("attempts") + 1)
    try:
        result = call(row.idempotency_key)
    except TransientGatewayError as exc:
        model.objects.filter(pk=row.pk).update(
            error_code=f"transient:{exc.http_status or 'network'}", error_message=exc.message[:2000]
        )
        _event(refund, RefundEvent.Kind.STEP_FAILED, actor=WORKER, message=f"{step}: {exc.message} (will retry)")
        return f"{step}: {exc.message}"
    except PermanentGatewayError as exc:
        on_permanent(exc)
        return None
    crash_point(f"after_stripe:{step}")
    on_success(result, False)
    return None


def _complete_reversal(refund, reversal, gateway_id: str, step: str, recovered: bool = False) -> None:
    with transaction.atomic():
        updated = TransferReversal.objects.filter(pk=reversal.pk, status=TransferReversal.Status.PENDING).update(
            status=TransferReversal.Status.COMPLETE,
            gateway_reversal_id=gateway_id,
            error_code="",
            error_message="",
        )
        if not updated:
            return
        # One UPDATE: the new total and the status it implies, computed by the database row itself.
        new_total = F("reversed_amount") + reversal.amount
        Transfer.objects.filter(pk=reversal.transfer_id).update(
            reversed_amount=new_total,
            status=Case(
                When(amount__lte=new_total, then=Value(Transfer.Status.REVERSED)),
                default=Value(Transfer.Status.PARTIALLY_REVERSED),
            ),
            date_last_modified=timezone.now(),
        )
        _event(
            refund,
            RefundEvent.Kind.STEP_SUCCEEDED,
            actor=WORKER,
            message=f"{step}: reversed {reversal.amount} {reversal.currency} ({gateway_id})"
            + (" (found at Stripe after a lost response)" if recovered else ""),
            data={"step": step, "gateway_id": gateway_id, "amount": reversal.amount},
        )


def _apply_shopper_result(refund, shopper: ShopperRefund, result, recovered: bool = False) -> None:
    status_map = {
        "succeeded": ShopperRefund.Status.SUCCEEDED,
        "failed": ShopperRefund.Status.FAILED,
        "canceled": ShopperRefund.Status.FAILED,
    }
    new_status = status_map.get(result.status, ShopperRefund.Status.PENDING)
    with transaction.atomic():
        # Conditional UPDATE: only a PENDING row takes the result, so a repeat records nothing twice.
        updated = ShopperRefund.objects.filter(pk=shopper.pk, status=ShopperRefund.Status.PENDING).update(
            gateway_refund_id=result.id,
            status=new_status,
            failure_reason=result.failure_reason or "",
            error_code="",
            error_message="",
            date_last_modified=timezone.now(),
        )
        if not updated:
            shopper.refresh_from_db(fields=["status", "gateway_refund_id"])
            return
        shopper.gateway_refund_id, shopper.status = result.id, new_status
        current = shopper
        step = RefundStep.SHOPPER_REFUND
        if new_status == ShopperRefund.Status.SUCCEEDED:
            PaymentTransaction.objects.filter(pk=current.payment_transaction_id).update(
                amount_refunded=F("amount_refunded") + current.amount
            )
            _event(
                refund,
                RefundEvent.Kind.STEP_SUCCEEDED,
                actor=WORKER,
                message=f"{step}: refunded {current.amount} {current.currency} to the shopper ({result.id})"
                + (" (found at Stripe after a lost response)" if recovered else ""),
                data={"step": step, "gateway_id": result.id, "amount": current.amount},
            )
        elif new_status == ShopperRefund.Status.FAILED:
            RefundError.objects.create(
                refund=refund,
                error_code=RefundErrorCode.SHOPPER_REFUND_FAILED,
                error_message=f"Stripe could not refund the shopper ({result.failure_reason or result.status}).",
                step=step,
                gateway_code=result.failure_reason or "",
            )
            _event(refund, RefundEvent.Kind.STEP_FAILED, actor=WORKER, message=f"{step}: {result.status}")


def _fail_step(refund, step: str, exc: PermanentGatewayError, *, reversal=None, shopper=None) -> None:
    code = code_for_gateway_error(exc.code, exc.error_type)
    if isinstance(exc, IdempotencyConflictError):
        code = RefundErrorCode.IDEMPOTENCY_CONFLICT
    message = exc.message or str(exc)
    with transaction.atomic():
        if reversal is not None:
            TransferReversal.objects.filter(pk=reversal.pk).update(
                status=TransferReversal.Status.FAILED, error_code=exc.code or "", error_message=message
            )
            reversal.status = TransferReversal.Status.FAILED
        if shopper is not None:
            ShopperRefund.objects.filter(pk=shopper.pk).update(
                status=ShopperRefund.Status.FAILED, error_code=exc.code or "", error_message=message
            )
            shopper.status = ShopperRefund.Status.FAILED
        RefundError.objects.create(
            refund=refund, error_code=code, error_message=message, step=step, gateway_code=exc.code or ""
        )
        _event(
            refund,
            RefundEvent.Kind.STEP_FAILED,
            actor=WORKER,
            message=f"{step}: {message}",
            data={"step": step, "gateway_code": exc.code, "error_code": int(code)},
        )


def _schedule_retry(refund: Refund, problems: list[str]) -> ProcessOutcome:
    if refund.attempts >= settings.REFUND_MAX_ATTEMPTS:
        return _finish(
            refund,
            failed_error=(
                RefundErrorCode.RETRIES_EXHAUSTED,
                f"Stripe kept failing after {refund.attempts} attempts: {'; '.join(problems)}. "
                "Retrying looks each step up at Stripe before calling again.",
            ),
        )
    countdown = _backoff_seconds(refund.attempts)
    Refund.objects.filter(pk=refund.pk).update(next_attempt_at=timezone.now() + timezone.timedelta(seconds=countdown))
    _event(
        refund,
        RefundEvent.Kind.RETRY_SCHEDULED,
        actor=WORKER,
        message=f"Attempt {refund.attempts} hit a transient error; retrying in {countdown:.1f}s.",
        data={"problems": problems, "countdown": countdown},
    )
    return ProcessOutcome(status=RefundStatus.PROCESSING, retry_in=countdown, detail="; ".join(problems))


def _finish(refund: Refund, failed_error: tuple[RefundErrorCode, str] | None = None) -> ProcessOutcome:
    """Decide the refund's final status from its step rows (design section 4)."""
    with transaction.atomic():
        current = Refund.objects.select_for_update().get(pk=refund.pk)
        if current.status != RefundStatus.PROCESSING:
            return ProcessOutcome(status=current.status, detail="already final")
        if failed_error:
            RefundError.objects.create(refund=current, error_code=failed_error[0], error_message=failed_error[1])
        shopper = ShopperRefund.objects.filter(refund=current).first()
        reversal_states = set(TransferReversal.objects.filter(refund=current).values_list("status", flat=True))
        if (
            (failed_error and (shopper is None or shopper.status != ShopperRefund.Status.SUCCEEDED))
            or shopper is None
            or shopper.status == ShopperRefund.Status.FAILED
        ):
            new_status = RefundStatus.FAILED
        elif TransferReversal.Status.FAILED in reversal_states or TransferReversal.Status.PENDING in reversal_states:
            new_status = RefundStatus.PARTIALLY_COMPLETED
        else:
            new_status = RefundStatus.COMPLETED
        current.status = new_status
        current.processing_started_at = None
        current.next_attempt_at = None
        if new_status in (RefundStatus.COMPLETED, RefundStatus.PARTIALLY_COMPLETED):
            current.date_completed = timezone.now()
        current.save(
            update_fields=["status", "processing_started_at", "next_attempt_at", "date_completed", "date_last_modified"]
        )
        _event(
            current,
            RefundEvent.Kind.STATUS_CHANGED,
            actor=WORKER,
            from_status=RefundStatus.PROCESSING,
            to_status=new_status,
            message=failed_error[1] if failed_error else "",
        )
        notifications.refund_event_emit(current)
        bag_update_refund_state(bag_id=current.bag_id)
    return ProcessOutcome(status=new_status)


def bag_update_refund_state(*, bag_id: int) -> None:
    """Bag (and order) financial status follow the refunds whose money moved."""
    bag = Bag.objects.select_for_update().get(pk=bag_id)
    refunded = (
        Refund.objects.filter(bag=bag, status__in=MONEY_MOVED_STATUSES).aggregate(total=Sum("amount"))["total"] or 0
    )
    total = bag_totals(bag).total
    if refunded <= 0:
        return
    if refunded >= total:
        bag.financial_status = FinancialStatus.REFUNDED
        if bag.status != BagStatus.CANCELED:
            bag.status = BagStatus.REFUNDED
    else:
        bag.financial_status = FinancialStatus.PARTIALLY_REFUNDED
        if bag.status != BagStatus.CANCELED:
            bag.status = BagStatus.PARTIALLY_REFUNDED
    bag.save(update_fields=["financial_status", "status", "date_last_modified"])
    statuses = set(Bag.objects.filter(order_id=bag.order_id).values_list("financial_status", flat=True))
    order_status = OrderStatus.REFUNDED if statuses == {FinancialStatus.REFUNDED} else OrderStatus.PARTIALLY_REFUNDED
    Order.objects.filter(pk=bag.order_id).update(status=order_status, date_last_modified=timezone.now())
    notifications.bag_refund_events_emit(bag, refunded_amount=refunded)


def bag_mark_canceled(*, bag: Bag, actor: str) -> bool:
    """The platform says the bag's order is cancelled: the bag becomes CANCELED (with or without a
    refund, as Violet's ORDER_CANCELLED means). True when this call changed it."""
    with transaction.atomic():
        current = Bag.objects.select_for_update().get(pk=bag.pk)
        if current.status == BagStatus.CANCELED:
            return False
        previous = current.status
        current.status = BagStatus.CANCELED
        current.save(update_fields=["status", "date_last_modified"])
        notifications.bag_cancel_events_emit(current)
    logger.info("bag %s: %s -> CANCELED by %s", bag.pk, previous, actor)
    bag.status = BagStatus.CANCELED
    return True


# --------------------------------------------------------------------------------------------------
# Sweeping and operator repairs
# --------------------------------------------------------------------------------------------------


def refunds_stuck_queryset(now=None):
    """PROCESSING refunds nobody is working on: their message was lost, or their worker died."""
    now = now or timezone.now()
    threshold = now - timezone.timedelta(seconds=settings.REFUND_STUCK_AFTER_SECONDS)
    from django.db.models import Q

    return Refund.objects.filter(status=RefundStatus.PROCESSING).filter(
        Q(next_attempt_at__lt=threshold) | Q(next_attempt_at__isnull=True, date_last_modified__lt=threshold)
    )


def refund_sweep_stuck(*, limit: int = 500) -> list[int]:
    """Re-enqueue stuck refunds (a lost message loses nothing). The advisory lock and the status
    check make a duplicate harmless if the original is in fact still running."""
    ids = list(refunds_stuck_queryset().order_by("date_created").values_list("pk", flat=True)[:limit])
    now = timezone.now()
    for refund_id in ids:
        Refund.objects.filter(pk=refund_id).update(next_attempt_at=now)
        RefundEvent.objects.create(
            refund_id=refund_id, kind=RefundEvent.Kind.REQUEUED, actor="sweep", message="Re-enqueued stuck refund."
        )
        _enqueue_processing(refund_id)
    return ids


def _operator_actor(user) -> str:
    return f"operator:{user.get_username()}" if user is not None else "system"


def _money_moved(refund: Refund) -> bool:
    return (
        TransferReversal.objects.filter(refund=refund, status=TransferReversal.Status.COMPLETE).exists()
        or ShopperRefund.objects.filter(refund=refund)
        .exclude(gateway_refund_id__isnull=True)
        .exclude(status=ShopperRefund.Status.FAILED)
        .exists()
    )


def _unrecorded_stripe_object(refund: Refund) -> str | None:
    """The id of a Stripe reversal/refund made for a step whose answer we never recorded (sent at
    least once, still PENDING), or None. Cancelling then would free the amount for a second refund."""
    gateway = get_gateway()
    try:
        for reversal in TransferReversal.objects.filter(
            refund=refund, status=TransferReversal.Status.PENDING, attempts__gt=0
        ).select_related("transfer"):
            step = _reversal_step(reversal.transfer.recipient)
            for found in gateway.list_transfer_reversals(reversal.transfer.gateway_transfer_id):
                if _is_step_object(found, refund, step):
                    return found.id
        shopper = (
            ShopperRefund.objects.filter(refund=refund, status=ShopperRefund.Status.PENDING, attempts__gt=0)
            .select_related("payment_transaction")
            .first()
        )
        if shopper is not None:
            payment_intent_id = shopper.payment_transaction.gateway_transaction_id
            for found in gateway.list_refunds(payment_intent_id=payment_intent_id):
                if found.status not in _REFUND_STATUSES_WITHOUT_MONEY and _is_step_object(
                    found, refund, RefundStep.SHOPPER_REFUND
                ):
                    return found.id
    except TransientGatewayError as exc:
        raise InvalidTransition(
            f"Could not confirm with Stripe that no money moved for this refund ({exc.message}); try again."
        ) from exc
    return None


@contextmanager
def _refund_locked_for_operator(refund: Refund, *, allowed: set[str], action: str, before_row_lock=None):
    """The refund, exclusive against the engine (advisory lock) and row-locked, if its status allows
    `action`; `before_row_lock` runs in between (a Stripe look-up must not hold a row lock)."""
    with try_exclusive("refund", refund.pk) as acquired:
        if not acquired:
            raise InvalidTransition("This refund is being processed right now; try again in a moment.")
        if before_row_lock is not None:
            before_row_lock()
        with transaction.atomic():
            current = Refund.objects.select_for_update().get(pk=refund.pk)
            if current.status not in allowed:
                raise InvalidTransition(f"A {current.status} refund cannot be {action}.")
            yield current


def _operator_status_change(current: Refund, *, to_status: str, kind: str, user, note: str, **fields) -> None:
    """Save the new status (and fields), audit it naming the operator, and tell the channel."""
    previous = current.status
    current.status = to_status
    for name, value in fields.items():
        setattr(current, name, value)
    current.save(update_fields=["status", *fields, "date_last_modified"])
    _event(
        current,
        kind,
        actor=_operator_actor(user),
        user=user,
        from_status=previous,
        to_status=to_status,
        message=note,
    )
    notifications.refund_event_emit(current)


def refund_retry(*, refund: Refund, user=None, note: str = "") -> Refund:
    """Put a FAILED / PARTIALLY_COMPLETED (or stuck PROCESSING) refund back to work. Steps that
    failed definitively get a fresh idempotency key generation (Stripe would replay the stored
    error for the old key); steps with an unknown outcome keep theirs and are looked up first."""
    retryable = {RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED, RefundStatus.PROCESSING}
    with _refund_locked_for_operator(refund, allowed=retryable, action="retried") as current:
        for reversal in TransferReversal.objects.filter(refund=current, status=TransferReversal.Status.FAILED):
            step = _reversal_step(reversal.transfer.recipient)
            reversal.idempotency_key = _next_generation_key(current, step, reversal.idempotency_key)
            reversal.status = TransferReversal.Status.PENDING
            reversal.attempts = 0
            reversal.save(update_fields=["idempotency_key", "status", "attempts", "date_last_modified"])
        shopper = ShopperRefund.objects.filter(refund=current, status=ShopperRefund.Status.FAILED).first()
        if shopper is not None:
            shopper.idempotency_key = _next_generation_key(current, RefundStep.SHOPPER_REFUND, shopper.idempotency_key)
            shopper.status = ShopperRefund.Status.PENDING
            shopper.gateway_refund_id = None
            shopper.failure_reason = ""
            shopper.attempts = 0
            shopper.save()
        _operator_status_change(
            current,
            to_status=RefundStatus.PROCESSING,
            kind=RefundEvent.Kind.RETRY_REQUESTED,
            user=user,
            note=note,
            attempts=0,
            next_attempt_at=timezone.now(),
            date_completed=None,
        )
        transaction.on_commit(lambda: _enqueue_processing(current.pk))
    return current


def _next_generation_key(refund: Refund, step: str, old_key: str) -> str:
    generation = 1
    if "-g" in old_key:
        suffix = old_key.rsplit("-g", 1)[1]
        generation = int(suffix) if suffix.isdigit() else 1
    return _step_key(refund, step, generation + 1)


def refund_mark_external(*, refund: Refund, user=None, note: str) -> Refund:
    """The money was settled outside the network (operator or notice says so): stop processing."""
    if not (note or "").strip():
        raise ValidationFailed("Say how the money moved.", field_errors={"note": ["A note is required."]})
    allowed = {RefundStatus.FAILED, RefundStatus.PARTIALLY_COMPLETED, RefundStatus.PROCESSING}
    with _refund_locked_for_operator(refund, allowed=allowed, action="marked external") as current:
        _operator_status_change(
            current,
            to_status=RefundStatus.EXTERNAL,
            kind=RefundEvent.Kind.MARKED_EXTERNAL,
            user=user,
            note=note.strip(),
            next_attempt_at=None,
            processing_started_at=None,
        )
        bag_update_refund_state(bag_id=current.bag_id)
    return current


def refund_cancel(*, refund: Refund, user=None, note: str = "") -> Refund:
    """Stop a refund before any money moved; its amounts and quantities become refundable again."""

    def refuse_if_stripe_holds_an_unrecorded_object():
        found_at_stripe = _unrecorded_stripe_object(refund)
        if found_at_stripe:
            raise InvalidTransition(
                f"Stripe already holds {found_at_stripe} for this refund, sent before its answer was lost: "
                "money may have moved. Retry the refund to record it instead of canceling."
            )

    allowed = {RefundStatus.PROCESSING, RefundStatus.FAILED}
    with _refund_locked_for_operator(
        refund, allowed=allowed, action="canceled", before_row_lock=refuse_if_stripe_holds_an_unrecorded_object
    ) as current:
        if _money_moved(current):
            raise InvalidTransition("Money has already moved for this refund; it cannot be canceled.")
        for line in RefundSku.objects.filter(refund=current):
            OrderSku.objects.filter(pk=line.order_sku_id).update(
                quantity_refunded=F("quantity_refunded") - line.quantity_refunded
            )
        _operator_status_change(
            current,
            to_status=RefundStatus.CANCELED,
            kind=RefundEvent.Kind.CANCELED,
            user=user,
            note=note,
            next_attempt_at=None,
            processing_started_at=None,
        )
    return current


def refund_error_resolve(*, error: RefundError, user=None, note: str = "") -> RefundError:
    if error.resolved:
        raise InvalidTransition("This error is already resolved.")
    now = timezone.now()
    updated = RefundError.objects.filter(pk=error.pk, resolved=False).update(
        resolved=True, date_resolved=now, resolved_by=user
    )
    if not updated:
        raise InvalidTransition("This error is already resolved.")
    error.refresh_from_db()
    _event(
        error.refund,
        RefundEvent.Kind.ERROR_RESOLVED,
        actor=_operator_actor(user),
        user=user,
        message=note or f"Resolved error {error.error_code}: {error.error_message[:200]}",
        data={"error_id": error.pk},
    )
    return error


__all__ = [
    "RecordResult",
    "RefundSkuLine",
    "bag_mark_canceled",
    "bag_refunded_parts",
    "bag_update_refund_state",
    "refund_cancel",
    "refund_error_resolve",
    "refund_mark_external",
    "refund_process",
    "refund_record",
    "refund_retry",
    "refund_sweep_stuck",
]

"""Recording refunds: the one way a refund comes into existence, whoever asks for it.

Entry points (platform signals, merchant notices, the channel API, operators) call `refund_record`.
Under the bag's row lock it reads what is still refundable, validates the request against it,
works out the refund's parts (sub_total, shipping, tax), writes the refund with its SKU lines, and
enqueues its processing after commit. Idempotent on (bag, external_id) and (bag, sender, request_key).

Request fingerprints (issue 19): a refund recorded under a client's key (an Idempotency-Key, a
portal form token, a merchant's reference) stores the fingerprint of the request that recorded it,
a sha256 of the normalized request (`request_fingerprint`). A repeat under the same key with the same
fingerprint returns the first refund; with another, it is refused (`RequestMismatch`, 422) naming
the first refund, as Stripe refuses a reused idempotency key. Keys are scoped by their sender: a
channel's Idempotency-Key belongs to its app, a notice's key to the bag's merchant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from payments.models import PaymentTransaction
from refunds import announcements as notifications
from refunds.amounts import Remaining, bag_refundable_remaining
from refunds.errors import RefundErrorCode
from refunds.models import (
    Bag,
    BagStatus,
    OrderSku,
    ReasonCode,
    Refund,
    RefundError,
    RefundEvent,
    RefundSku,
    RefundSource,
    RefundStatus,
)
from refunds.services.engine import enqueue_processing
from refunds.services.events import event_record
from refunds.services.forwarding import forwarding_echo_adopt, forwarding_enqueue, forwarding_open, forwarding_waits
from refunds.services.parts import is_int, platform_amounts, resolve_parts, validate_sku_lines
from violet_refunds.exceptions import Conflict, RequestUnprocessable, ValidationFailed
from violet_refunds.money import AmountParts

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


class ChargeDisputed(Conflict):
    """The order's payment is disputed (or the shopper won the dispute): refunding it would return
    the money twice. Stripe refuses such a refund too (`charge_disputed`)."""

    error_code = "charge_disputed"


class RequestMismatch(ValidationFailed):
    """The key (Idempotency-Key, form token or merchant reference) already recorded a refund for a
    different request. `field_errors` names the key's field (`request_key` or `external_id`)."""

    status_code = 422
    error_code = "idempotency_key_reused"


@dataclass(frozen=True)
class RefundSkuLine:
    order_sku_id: int
    quantity: int
    amount: int | None = None


@dataclass(frozen=True)
class RecordResult:
    refund: Refund
    created: bool


@dataclass(frozen=True)
class PlatformRefundRequest:
    """What a platform says was refunded (or what its rules imply, e.g. a cancellation), in minor
    units of the bag currency. `refund_record_platform` works out the refund's parts from it under the
    bag lock.

    - `amount`: money actually returned to the shopper; None with `parts` None = everything still
      refundable on the bag.
    - `parts`: how the platform split it, when it did (Shopify); `shipping_tax`: the tax on shipping.
    - `skus`: the refunded lines the bag knows (platform line ids already matched to OrderSkus).
    - `shipping_included`: shipping was part of it, the platform does not say how much (Wix).
    """

    external_id: str
    source: str
    currency: str | None = None
    amount: int | None = None
    parts: AmountParts | None = None
    shipping_tax: int = 0
    skus: tuple[RefundSkuLine, ...] = ()
    shipping_included: bool = False
    reason: str = ""
    reason_code: str = ReasonCode.OTHER
    restock: bool = False


@dataclass(frozen=True)
class PlatformRecordResult:
    refund: Refund | None  # None: nothing is left to refund on the bag, so nothing was recorded
    created: bool
    notes: tuple[str, ...] = ()  # how the platform's figures were read, for the event's outcome


def request_scope_for(bag: Bag, source: str) -> str:
    """Who a request key belongs to: the channel's app for the channel API, otherwise the bag's
    merchant (its portal form, its notice API, an operator recording its notice)."""
    if source == RefundSource.CHANNEL_API:
        app_id = Bag.objects.filter(pk=bag.pk).values_list("order__app_id", flat=True).first()
        return f"app:{app_id}"
    return f"merchant:{bag.merchant_id}"


def request_fingerprint(
    *,
    external_id: str | None,
    amount: int | None,
    sub_total_amount: int | None,
    shipping_amount: int | None,
    tax_amount: int | None,
    shipping_tax_amount: int,
    skus: Sequence[RefundSkuLine],
    currency: str | None,
    reason: str,
    reason_code: str,
    restock_items: bool,
    notify_customer: bool,
    shipping_full_refund: bool,
) -> str:
    """A stable hash of a validated refund request (the merchant's reference included, not the
    Idempotency-Key), normalized: SKU lines sorted, the currency upper-cased, the reason stripped.
    Two requests asking for the same refund have the same fingerprint however their JSON was written
    (key order, spacing, line order)."""
    normalized = {
        "external_id": external_id,
        "amount": amount,
        "sub_total_amount": sub_total_amount,
        "shipping_amount": shipping_amount,
        "tax_amount": tax_amount,
        "shipping_tax_amount": shipping_tax_amount or 0,
        "skus": sorted([line.order_sku_id, line.quantity, line.amount] for line in skus),
        "currency": (currency or "").upper() or None,
        "reason": (reason or "").strip(),
        "reason_code": reason_code,
        "restock_items": bool(restock_items),
        "notify_customer": bool(notify_customer),
        "shipping_full_refund": bool(shipping_full_refund),
    }
    text = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"refund-request-v1:{text}".encode()).hexdigest()


# A platform signal repeated with other figures is the same refund (reconcile, don't interpret
# deltas): only requests a client sends (a channel, a merchant, an operator) are fingerprinted.
PLATFORM_SOURCES = frozenset({RefundSource.PLATFORM_WEBHOOK, RefundSource.PLATFORM_POLL})


@dataclass(frozen=True)
class _Keys:
    """What identifies a request: the merchant's reference (external_id), the sender's key, and the
    request's fingerprint (empty: not compared, e.g. a platform signal)."""

    external_id: str | None
    request_key: str | None
    request_scope: str = ""
    fingerprint: str = ""


def _existing_refund(bag: Bag, keys: _Keys) -> Refund | None:
    """The refund already recorded under one of these keys, after checking it was recorded for the
    same request (RequestMismatch otherwise)."""
    found, field = None, ""
    if keys.external_id:
        found, field = Refund.objects.filter(bag=bag, external_id=keys.external_id).first(), "external_id"
    if found is None and keys.request_key:
        found, field = (
            Refund.objects.filter(bag=bag, request_scope=keys.request_scope, request_key=keys.request_key).first(),
            "request_key",
        )
    if (
        found is not None
        and keys.fingerprint
        and found.request_fingerprint
        and found.request_fingerprint != keys.fingerprint
    ):
        what = "reference" if field == "external_id" else "key"
        raise RequestMismatch(
            f"This {what} was already used for refund {found.pk} with a different request; "
            f"send a new {what} for a new refund, or repeat the first request exactly.",
            field_errors={field: [f"Already used for refund {found.pk} with a different request."]},
        )
    return found


def refund_for_request(*, bag: Bag, source: str, request_key: str, **fields) -> Refund | None:
    """The refund a client's key already recorded for this very request (None: none yet), or
    RequestMismatch when the key recorded a different one: the check refund_record makes first, for
    callers that must know before doing anything else (the cancel endpoints, before the platform)."""
    keys = _Keys(
        external_id=None,
        request_key=request_key,
        request_scope=request_scope_for(bag, source),
        fingerprint=_request_fingerprint_for(**fields),
    )
    return _existing_refund(bag, keys)


def _request_fingerprint_for(
    *,
    amount=None,
    sub_total_amount=None,
    shipping_amount=None,
    tax_amount=None,
    shipping_tax_amount=0,
    skus=(),
    external_id=None,
    currency=None,
    reason="",
    reason_code=ReasonCode.OTHER,
    restock_items=False,
    notify_customer=False,
    shipping_full_refund=False,
) -> str:
    return request_fingerprint(
        external_id=external_id,
        amount=amount,
        sub_total_amount=sub_total_amount,
        shipping_amount=shipping_amount,
        tax_amount=tax_amount,
        shipping_tax_amount=shipping_tax_amount,
        skus=skus,
        currency=currency,
        reason=reason,
        reason_code=reason_code,
        restock_items=restock_items,
        notify_customer=notify_customer,
        shipping_full_refund=shipping_full_refund,
    )


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
    external: bool = False,
) -> RecordResult:
    """Record a refund of (part of) a bag and enqueue its processing. Idempotent on
    (bag, external_id) and (bag, sender, request_key): a repeat of the same request returns the first
    refund unchanged; another request under the same key raises RequestMismatch (422).

    `external`: the money already moved outside the product (a refund made in the Stripe Dashboard):
    the refund is recorded EXTERNAL, counts against what is still refundable, and is never processed.
    Otherwise a payment under dispute refuses the refund (ChargeDisputed, 409)."""
    external_id = (external_id or "").strip() or None
    request_key = (request_key or "").strip() or None
    keys = _Keys(external_id=external_id, request_key=request_key)
    if (external_id or request_key) and source not in PLATFORM_SOURCES:
        keys = _Keys(
            external_id=external_id,
            request_key=request_key,
            request_scope=request_scope_for(bag, source) if request_key else "",
            fingerprint=request_fingerprint(
                external_id=external_id,
                amount=amount,
                sub_total_amount=sub_total_amount,
                shipping_amount=shipping_amount,
                tax_amount=tax_amount,
                shipping_tax_amount=shipping_tax_amount,
                skus=skus,
                currency=currency,
                reason=reason,
                reason_code=reason_code,
                restock_items=restock_items,
                notify_customer=notify_customer,
                shipping_full_refund=shipping_full_refund,
            ),
        )
    existing = _existing_refund(bag, keys)
    if existing:
        return RecordResult(refund=existing, created=False)
    _check_labels(source, reason_code, reason)

    def create(locked_bag: Bag) -> Refund:
        remaining = bag_refundable_remaining(locked_bag)
        refund = _create_refund(
            bag=locked_bag,
            remaining=remaining,
            source=source,
            actor=actor,
            amount=amount,
            sub_total_amount=sub_total_amount,
            shipping_amount=shipping_amount,
            tax_amount=tax_amount,
            shipping_tax_amount=shipping_tax_amount,
            skus=skus,
            keys=keys,
            currency=currency,
            reason=reason or "",
            reason_code=reason_code,
            restock_items=restock_items,
            notify_customer=notify_customer,
            shipping_full_refund=shipping_full_refund,
            inbound_event=inbound_event,
            user=user,
            external=external,
        )
        if source == RefundSource.CHANNEL_API:
            # Issue 14: the merchant's platform hears of a channel refund before its money moves.
            forwarding_open(refund, full=refund.amount >= remaining.total, actor=actor)
        return refund

    refund, created = _record_under_bag_lock(bag, keys=keys, enqueue=enqueue and not external, create=create)
    assert refund is not None  # `create` always returns a refund (or raises)
    return RecordResult(refund=refund, created=created)


def refund_record_platform(
    *, bag: Bag, request: PlatformRefundRequest, actor: str, inbound_event=None, enqueue: bool = True
) -> PlatformRecordResult:
    """Record what a platform says was refunded. The amounts are decided here, once, under the
    bag's row lock, against what is left (refunds.services.parts.platform_amounts). Idempotent
    on (bag, external_id); a bag with nothing left records nothing and says so in the notes."""
    external_id = (request.external_id or "").strip() or None
    keys = _Keys(external_id=external_id, request_key=None)
    existing = _existing_refund(bag, keys)
    if existing:
        return PlatformRecordResult(refund=existing, created=False)
    # The echo of a refund we forwarded (our marker in its note) is that refund, not a new one.
    echoed = forwarding_echo_adopt(bag=bag, platform_refund_id=external_id or "", note=request.reason, actor=actor)
    if echoed is not None:
        return PlatformRecordResult(
            refund=echoed,
            created=False,
            notes=(f"platform refund {external_id} is the echo of refund #{echoed.pk}, forwarded by us",),
        )
    notes: list[str] = []
    adjusted: list[str] = []

    def create(locked_bag: Bag) -> Refund | None:
        remaining = bag_refundable_remaining(locked_bag)
        if remaining.total <= 0:
            notes.append(f"bag {locked_bag.pk} is already fully refunded, so {request.external_id} records nothing")
            return None
        _check_labels(request.source, request.reason_code, request.reason)
        asked = platform_amounts(locked_bag, request, remaining, notes)
        fitted = _fit_to_remaining(locked_bag, asked, remaining)
        if fitted is not asked:
            adjusted.append(
                f"the platform refund {request.external_id} asks {_asked_total(asked)} but only {remaining.total} "
                f"(minor units) was still refundable, part of the bag having been refunded through another source: "
                f"recorded {_asked_total(fitted) if fitted else remaining.total}, "
                "so the shopper gets the platform's total"
            )
            notes.append(adjusted[-1])
        amounts = {
            "amount": None,
            "sub_total_amount": None,
            "shipping_amount": None,
            "tax_amount": None,
            "shipping_tax_amount": 0,
            "skus": (),
            **fitted,
        }
        refund = _create_refund(
            bag=locked_bag,
            remaining=remaining,
            source=request.source,
            actor=actor,
            keys=keys,
            currency=request.currency,
            reason=request.reason or "",
            reason_code=request.reason_code,
            restock_items=request.restock,
            notify_customer=False,
            shipping_full_refund=False,
            inbound_event=inbound_event,
            user=None,
            **amounts,
        )
        if adjusted:
            # Mixed sources (issue 14): recorded, and an open error puts it in front of an operator.
            RefundError.objects.create(
                refund=refund,
                error_code=RefundErrorCode.PLATFORM_AMOUNT_ADJUSTED,
                error_message=f"Operator note: {adjusted[0]}. Check the other refunds of bag {locked_bag.pk}.",
            )
            event_record(refund, RefundEvent.Kind.NOTE, actor=actor, message=adjusted[0], data={"mixed_sources": True})
        return refund

    refund, created = _record_under_bag_lock(bag, keys=keys, enqueue=enqueue, create=create)
    return PlatformRecordResult(refund=refund, created=created, notes=tuple(notes))


def _asked_total(amounts: dict) -> int:
    if amounts.get("amount") is not None:
        return amounts["amount"]
    return sum(amounts.get(name) or 0 for name in ("sub_total_amount", "shipping_amount", "tax_amount"))


def _fit_to_remaining(bag: Bag, amounts: dict, remaining: Remaining) -> dict:
    """What a platform refund can still record when it asks more than is left on the bag because
    part was refunded through another source (a channel refund, a notice). The platform's total is
    the merchant's intent for the bag: everything left when it asks that much or more, else its
    amount divided over what is left. `amounts` itself when it fits."""
    if not amounts:
        return amounts  # everything still refundable: fits by definition
    left = remaining.parts
    too_much = (
        _asked_total(amounts) > remaining.total
        or (amounts.get("sub_total_amount") or 0) > left.sub_total
        or (amounts.get("shipping_amount") or 0) > left.shipping
        or (amounts.get("tax_amount") or 0) > left.tax
        or any(line.quantity > remaining.skus.get(line.order_sku_id, 0) for line in amounts.get("skus") or ())
    )
    if not too_much:
        return amounts
    if _asked_total(amounts) >= remaining.total:
        return {}
    return {"amount": _asked_total(amounts)}


def _check_labels(source: str, reason_code: str, reason: str) -> None:
    if source not in RefundSource.values:
        raise ValidationFailed(f"Unknown refund source {source!r}.", field_errors={"source": ["invalid"]})
    if reason_code not in ReasonCode.values:
        raise ValidationFailed(
            "Unknown reason code.",
            field_errors={"reason_code": [f"Must be one of {', '.join(ReasonCode.values)}."]},
        )
    if len(reason or "") > 255:
        raise ValidationFailed("Reason is too long.", field_errors={"reason": ["At most 255 characters."]})


def _record_under_bag_lock(
    bag: Bag,
    *,
    keys: _Keys,
    enqueue: bool,
    create: Callable[[Bag], Refund | None],
) -> tuple[Refund | None, bool]:
    """(refund, created): `create(locked_bag)` under the bag's row lock, unless a refund with this
    external id / sender's request key exists (then that one, not created, if recorded for the same
    request: RequestMismatch otherwise). `create` may record nothing (None)."""
    try:
        with transaction.atomic():
            # Serialize every refund of this bag: "what is left" must not be read by two writers at once.
            locked_bag = Bag.objects.select_for_update().get(pk=bag.pk)
            existing = _existing_refund(locked_bag, keys)
            if existing:
                return existing, False
            refund = create(locked_bag)
            if refund is None:
                return None, False
            notifications.refund_event_emit(refund)  # outbox: REFUND_<status>, same transaction
            if enqueue and forwarding_waits(refund):  # to the platform first (refunds.services.forwarding)
                transaction.on_commit(lambda: forwarding_enqueue(refund.pk))
            elif enqueue:  # False only for bulk imports/demo data; the stuck sweep picks those up
                transaction.on_commit(lambda: enqueue_processing(refund.pk, due=refund.next_attempt_at))
    except IntegrityError:
        # A concurrent writer recorded the same external id / request key first: return theirs.
        existing = _existing_refund(bag, keys)
        if existing:
            return existing, False
        raise
    return refund, True


def _refuse_if_disputed(bag: Bag) -> None:
    payment = PaymentTransaction.objects.filter(order_id=bag.order_id).only("dispute_status", "dispute_id").first()
    if payment is not None and payment.refunds_blocked_by_dispute:
        raise ChargeDisputed(
            f"The shopper disputed this order's payment ({payment.dispute_id}, dispute {payment.dispute_status}): "
            "the card network returns the money through the dispute, so no refund can be made while it is open "
            "or once the shopper won it.",
            field_errors={"bag": ["The order's payment is disputed."]},
        )


def _create_refund(
    *, bag: Bag, remaining: Remaining, skus: Sequence[RefundSkuLine], keys: _Keys, external: bool = False, **fields
) -> Refund:
    errors: dict[str, list[str]] = {}
    if bag.status not in REFUNDABLE_BAG_STATUSES:
        raise RequestUnprocessable(
            f"Bag {bag.pk} is {bag.status} and cannot be refunded.",
            field_errors={"bag": [f"Bag status {bag.status} is not refundable."]},
        )
    if not external:
        _refuse_if_disputed(bag)
    currency = (fields["currency"] or bag.currency).upper()
    if currency != bag.currency:
        errors["currency"] = [f"The bag is in {bag.currency}; a refund in {currency} is not possible."]

    sku_rows = validate_sku_lines(bag, skus, remaining, errors)
    for name in ("amount", "sub_total_amount", "shipping_amount", "tax_amount", "shipping_tax_amount"):
        value = fields.get(name)
        if value is not None and (not is_int(value) or value < 0):
            errors[name] = ["Must be a non-negative integer amount in minor units."]
    if errors:
        raise RequestUnprocessable("The refund is invalid.", field_errors=errors)

    parts = resolve_parts(
        amount=fields["amount"],
        sub_total=fields["sub_total_amount"],
        shipping=fields["shipping_amount"],
        tax=fields["tax_amount"],
        sku_rows=sku_rows,
        remaining=remaining,
        errors=errors,
        currency=bag.currency,
    )
    if errors:
        raise RequestUnprocessable("The refund is invalid.", field_errors=errors)
    if parts.total <= 0:
        raise RequestUnprocessable(
            "Nothing to refund.", field_errors={"amount": ["The refund amount must be greater than 0."]}
        )
    if fields["shipping_tax_amount"] > parts.tax:
        raise RequestUnprocessable(
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
        external_id=keys.external_id,
        request_key=keys.request_key,
        request_scope=keys.request_scope,
        request_fingerprint=keys.fingerprint,
        status=RefundStatus.EXTERNAL if external else RefundStatus.PROCESSING,
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
        next_attempt_at=None if external else timezone.now(),
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
    event_record(
        refund,
        RefundEvent.Kind.RECORDED,
        actor=fields["actor"],
        user=fields["user"],
        to_status=refund.status,
        message=f"Recorded from {refund.get_source_display()}."
        + (" The money already moved outside the product: nothing is processed." if external else ""),
        data={"amount": refund.amount, "currency": currency, "external_id": refund.external_id},
    )
    return refund

"""Forwarding channel refunds to the merchant's platform before their money moves (issue 14).

A refund a channel asks for (`POST /v1/orders/{id}/bags/{id}/refunds`, a cancellation) gets a
`RefundForwarding` row when it is recorded. Where the merchant's platform can be written to, the
refund waits (PROCESSING, no money step) until the platform accepted it; the engine refuses to move
its money before that (`forwarding_blocks_money`). Where it cannot (no write API, a partial refund
on a platform that only refunds whole orders, no usable credentials), the row says so
(NOT_FORWARDED), the merchant is told what to mirror by hand, and the money moves at once.

Which platform can do what lives in `platforms` (the adapters' capabilities; refunds never imports
platforms): `platforms.apps` registers the hooks below at ready time. Without hooks (refunds used
alone) nothing is forwarded.

The states (refunds.models.ForwardingState): PENDING -> SENDING -> ACCEPTED (money moves) |
REFUSED (the refund ends FAILED, nothing moved, its amounts and quantities refundable again) |
RETRYING (unreachable; backoff below the visibility timeout) -> ... -> STALLED after
FORWARDING_MAX_ATTEMPTS (triage: an operator retries forwarding, or moves the money without the
platform: BYPASSED). A request that may have reached the platform is looked up there (our marker in
the refund's note) before anything is sent again, so a refund is never created twice.

The echo: the platform's webhook for a refund we created carries our marker in its note/reason;
`forwarding_echo_adopt` matches it to our refund (whichever arrives first) so it stays one refund.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from refunds import announcements as notifications
from refunds.errors import RefundErrorCode
from refunds.models import (
    Bag,
    ForwardingState,
    OrderSku,
    Refund,
    RefundError,
    RefundEvent,
    RefundForwarding,
    RefundStatus,
)
from refunds.services.bags import bag_update_refund_state
from refunds.services.events import event_record, operator_actor
from violet_refunds.exceptions import InvalidTransition, ValidationFailed
from violet_refunds.locks import try_exclusive
from violet_refunds.money import format_amount

logger = logging.getLogger(__name__)

# Money may move for the refund in these states; in the others it waits for the platform.
MONEY_MAY_MOVE = frozenset({ForwardingState.ACCEPTED, ForwardingState.NOT_FORWARDED, ForwardingState.BYPASSED})
IN_FLIGHT = frozenset(
    {ForwardingState.PENDING, ForwardingState.SENDING, ForwardingState.RETRYING, ForwardingState.STALLED}
)
# The merchant mirrors the refund by hand in these (the portal's task list).
MIRROR_STATES = frozenset({ForwardingState.NOT_FORWARDED, ForwardingState.BYPASSED})

# Written at the start of the refund's note on the platform (Shopify `note`, BigCommerce item
# `reason`, WooCommerce `reason`), which the platform's echo webhook and its refund list return.
_MARKER = "[violet-refund:{id}]"
_MARKER_RE = re.compile(r"\[violet-refund:(\d+)\]")


def enqueue_processing(refund_id: int, due: datetime | None = None) -> None:
    # The engine imports this module (its money gate), so this one reaches the engine lazily.
    from refunds.services.engine import enqueue_processing as enqueue

    enqueue(refund_id, due=due)


def forwarding_marker(refund_id: int) -> str:
    return _MARKER.format(id=refund_id)


def forwarding_marker_refund_id(text: str) -> int | None:
    """The refund id our marker names in a platform refund's note, if any."""
    match = _MARKER_RE.search(text or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ForwardingDecision:
    """What the platform layer says of a refund about to be recorded: forward it, or not and why."""

    forward: bool
    platform: str = ""
    reason: str = ""


@dataclass(frozen=True)
class ForwardingHooks:
    # decide(bag, full=...) -> ForwardingDecision: capabilities and credentials only, no HTTP
    # (it runs under the bag's row lock).
    decide: Callable[..., ForwardingDecision]
    # enqueue(refund_id, countdown=None): hand the forwarding to a platforms task.
    enqueue: Callable[..., None]


_hooks: ForwardingHooks | None = None


def forwarding_hooks_register(hooks: ForwardingHooks | None) -> None:
    """Called by platforms.apps at ready time (tests may swap them)."""
    global _hooks
    _hooks = hooks


def forwarding_enqueue(refund_id: int, countdown: float | None = None) -> None:
    if _hooks is None:
        return
    try:
        _hooks.enqueue(refund_id, countdown=countdown)
    except Exception:  # broker down: the stuck-refund sweep re-enqueues it (forwarding_blocks_money)
        logger.exception("Could not enqueue the forwarding of refund %s; the sweep will retry it", refund_id)


# --------------------------------------------------------------------------------------------------
# Recording (inside refund_record's transaction, under the bag lock)
# --------------------------------------------------------------------------------------------------


def forwarding_open(refund: Refund, *, full: bool, actor: str) -> RefundForwarding:
    """The forwarding row of a channel refund being recorded. Money waits when it is PENDING."""
    decision = (
        _hooks.decide(refund.bag, full=full)
        if _hooks is not None
        else ForwardingDecision(forward=False, reason="no platform forwarding is configured")
    )
    state = ForwardingState.PENDING if decision.forward else ForwardingState.NOT_FORWARDED
    forwarding = RefundForwarding.objects.create(
        refund=refund,
        platform=decision.platform,
        state=state,
        reason=decision.reason[:255],
        next_attempt_at=timezone.now() if decision.forward else None,
    )
    if decision.forward:
        message = f"Waiting for {decision.platform or 'the platform'} to accept it before any money moves."
    else:
        message = f"Not forwarded to the platform ({decision.reason}); the merchant is asked to mirror it."
        transaction.on_commit(lambda: _mirror_email_send(refund.pk))
    event_record(refund, RefundEvent.Kind.FORWARDING, actor=actor, message=message, data={"state": state})
    return forwarding


def forwarding_waits(refund: Refund) -> bool:
    return RefundForwarding.objects.filter(refund=refund, state__in=IN_FLIGHT).exists()


def forwarding_blocks_money(refund: Refund, *, now: datetime | None = None) -> str:
    """Why the engine must not move this refund's money yet ('' = it may). A forwarding that is due
    is handed to its task again: the stuck-refund sweep is the forwarding's safety net too."""
    if Refund.forwarding.is_cached(refund):  # loaded with the refund (the engine's first read)
        forwarding = getattr(refund, "forwarding", None)
    else:
        forwarding = RefundForwarding.objects.filter(refund=refund).first()
    if forwarding is None or forwarding.state in MONEY_MAY_MOVE:
        return ""
    now = now or timezone.now()
    if forwarding.state == ForwardingState.REFUSED:
        return "the platform refused the refund"
    if forwarding.state != ForwardingState.STALLED and (
        forwarding.next_attempt_at is None or forwarding.next_attempt_at <= now
    ):
        forwarding_enqueue(refund.pk)
    return f"waiting for the platform ({forwarding.get_state_display()})"


# --------------------------------------------------------------------------------------------------
# The forwarding task's steps (platforms.forwarding holds the advisory lock "forwarding")
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardingClaim:
    forwarding: RefundForwarding
    refund: Refund
    look_up_first: bool  # an earlier send may have reached the platform


def refund_forwarding_claim(*, refund_id: int, now: datetime | None = None) -> ForwardingClaim | None:
    """Take a due forwarding for one send: SENDING, one attempt charged. None when there is nothing
    to send (settled, waiting for an operator, not due yet, or the refund is no longer PROCESSING)."""
    now = now or timezone.now()
    with transaction.atomic():
        forwarding = RefundForwarding.objects.select_for_update().filter(refund_id=refund_id).first()
        if forwarding is None or forwarding.state not in (
            ForwardingState.PENDING,
            ForwardingState.SENDING,  # the last send died before recording an outcome
            ForwardingState.RETRYING,
        ):
            return None
        if forwarding.next_attempt_at is not None and forwarding.next_attempt_at > now:
            return None
        refund = Refund.objects.select_related("bag", "bag__merchant").get(pk=refund_id)
        if refund.status != RefundStatus.PROCESSING:
            return None
        look_up_first = forwarding.sends > 0
        forwarding.state = ForwardingState.SENDING
        forwarding.attempts += 1
        forwarding.save(update_fields=["state", "attempts", "date_last_modified"])
    return ForwardingClaim(forwarding=forwarding, refund=refund, look_up_first=look_up_first)


def refund_forwarding_sending(*, refund_id: int) -> None:
    """Just before a request that could create the refund on the platform leaves: from now on the
    platform is searched for it before anything is sent again. Committed at once (the caller is in
    no transaction), so a worker dying in the call leaves the mark behind."""
    RefundForwarding.objects.filter(refund_id=refund_id).update(sends=F("sends") + 1, date_last_modified=timezone.now())


def refund_forwarding_accept(*, refund_id: int, platform_refund_id: str, actor: str, message: str = "") -> bool:
    """The platform accepted (or already holds) the refund: store its id and move the money.
    Idempotent: a second call (the echo webhook and the create call's answer) changes nothing."""
    platform_refund_id = str(platform_refund_id or "")
    with transaction.atomic():
        refund = Refund.objects.select_related("bag").get(pk=refund_id)
        Bag.objects.select_for_update().get(pk=refund.bag_id)  # external ids are unique per bag
        forwarding = RefundForwarding.objects.select_for_update().get(refund_id=refund_id)
        accepted_now = forwarding.state in IN_FLIGHT
        if forwarding.state == ForwardingState.REFUSED:
            return False
        if platform_refund_id and not forwarding.platform_refund_id:
            forwarding.platform_refund_id = platform_refund_id
        if accepted_now:
            forwarding.state = ForwardingState.ACCEPTED
            forwarding.date_accepted = timezone.now()
            forwarding.next_attempt_at = None
            forwarding.last_error = ""
        forwarding.save()
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        fields = []
        if (
            platform_refund_id
            and not refund.external_id
            and not Refund.objects.filter(bag_id=refund.bag_id, external_id=platform_refund_id).exists()
        ):
            refund.external_id = platform_refund_id  # the platform's echo is matched by it
            fields.append("external_id")
        if accepted_now:
            refund.next_attempt_at = timezone.now()
            fields.append("next_attempt_at")
        if fields:
            refund.save(update_fields=[*fields, "date_last_modified"])
        if accepted_now:
            event_record(
                refund,
                RefundEvent.Kind.FORWARDING,
                actor=actor,
                message=message or f"Accepted by the platform (refund {platform_refund_id}); moving the money.",
                data={"state": ForwardingState.ACCEPTED, "platform_refund_id": platform_refund_id},
            )
            if refund.status == RefundStatus.PROCESSING:
                due = refund.next_attempt_at
                transaction.on_commit(lambda: enqueue_processing(refund_id, due=due))
    return accepted_now


def refund_forwarding_refuse(*, refund_id: int, message: str, actor: str) -> bool:
    """The platform said no (already refunded there, order archived, bad quantities): the refund ends
    FAILED with the platform's message, nothing moved, and its amounts and quantities are refundable
    again (refunds.amounts does not count a refused refund)."""
    with transaction.atomic():
        refund = Refund.objects.get(pk=refund_id)
        Bag.objects.select_for_update().get(pk=refund.bag_id)
        forwarding = RefundForwarding.objects.select_for_update().get(refund_id=refund_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if forwarding.state not in IN_FLIGHT or refund.status != RefundStatus.PROCESSING:
            return False
        forwarding.state = ForwardingState.REFUSED
        forwarding.last_error = message
        forwarding.next_attempt_at = None
        forwarding.save()
        RefundError.objects.create(
            refund=refund, error_code=RefundErrorCode.PLATFORM_REFUSED, error_message=message[:2000]
        )
        for line in refund.skus.all():
            OrderSku.objects.filter(pk=line.order_sku_id).update(
                quantity_refunded=F("quantity_refunded") - line.quantity_refunded
            )
        refund.status = RefundStatus.FAILED
        refund.next_attempt_at = None
        refund.processing_started_at = None
        refund.save(update_fields=["status", "next_attempt_at", "processing_started_at", "date_last_modified"])
        event_record(
            refund,
            RefundEvent.Kind.STATUS_CHANGED,
            actor=actor,
            from_status=RefundStatus.PROCESSING,
            to_status=RefundStatus.FAILED,
            message=f"The platform refused the refund; no money moved. {message}",
            data={"forwarding": ForwardingState.REFUSED},
        )
        notifications.refund_event_emit(refund)
        bag_update_refund_state(bag_id=refund.bag_id)
    return True


def _backoff_seconds(attempt: int) -> float:
    cap = min(
        settings.FORWARDING_RETRY_BACKOFF_MAX_SECONDS,
        settings.FORWARDING_RETRY_BACKOFF_BASE_SECONDS * (2 ** max(attempt - 1, 0)),
        max(settings.CELERY_VISIBILITY_TIMEOUT - 60, 1),
    )
    return max(0.5, random.uniform(cap / 2, cap))


def refund_forwarding_retry_later(*, refund_id: int, error: str, actor: str, retryable: bool = True) -> float | None:
    """The platform could not be reached (or its answer is unknown). Seconds until the next send, or
    None: the budget is spent (or retrying cannot help) and the forwarding waits for an operator."""
    with transaction.atomic():
        forwarding = RefundForwarding.objects.select_for_update().get(refund_id=refund_id)
        if forwarding.state != ForwardingState.SENDING:
            return None  # settled meanwhile (the echo webhook accepted it)
        forwarding.last_error = error[:2000]
        refund = Refund.objects.get(pk=refund_id)
        if not retryable or forwarding.attempts >= settings.FORWARDING_MAX_ATTEMPTS:
            forwarding.state = ForwardingState.STALLED
            forwarding.next_attempt_at = None
            forwarding.save()
            event_record(
                refund,
                RefundEvent.Kind.FORWARDING,
                actor=actor,
                message=f"The platform could not take the refund after {forwarding.attempts} attempts ({error}). "
                "An operator retries forwarding or moves the money without the platform.",
                data={"state": ForwardingState.STALLED},
            )
            return None
        countdown = _backoff_seconds(forwarding.attempts)
        due = timezone.now() + timedelta(seconds=countdown)
        forwarding.state = ForwardingState.RETRYING
        forwarding.next_attempt_at = due
        forwarding.save()
        Refund.objects.filter(pk=refund_id).update(next_attempt_at=due)
        event_record(
            refund,
            RefundEvent.Kind.FORWARDING,
            actor=actor,
            message=f"Attempt {forwarding.attempts} could not reach the platform ({error}); again in {countdown:.0f}s.",
            data={"state": ForwardingState.RETRYING, "countdown": countdown},
        )
    return countdown


def refund_forwarding_not_forwarded(*, refund_id: int, reason: str, actor: str) -> None:
    """Found at send time that the platform cannot take it (e.g. the credentials were removed): the
    merchant is told, and the money moves."""
    with transaction.atomic():
        forwarding = RefundForwarding.objects.select_for_update().get(refund_id=refund_id)
        if forwarding.state not in IN_FLIGHT:
            return
        forwarding.state = ForwardingState.NOT_FORWARDED
        forwarding.reason = reason[:255]
        forwarding.next_attempt_at = None
        forwarding.save()
        refund = Refund.objects.get(pk=refund_id)
        refund.next_attempt_at = timezone.now()
        refund.save(update_fields=["next_attempt_at", "date_last_modified"])
        event_record(
            refund,
            RefundEvent.Kind.FORWARDING,
            actor=actor,
            message=f"Not forwarded to the platform ({reason}); the merchant is asked to mirror it.",
            data={"state": ForwardingState.NOT_FORWARDED},
        )
        due = refund.next_attempt_at
        transaction.on_commit(lambda: enqueue_processing(refund_id, due=due))
        transaction.on_commit(lambda: _mirror_email_send(refund_id))


# --------------------------------------------------------------------------------------------------
# The echo
# --------------------------------------------------------------------------------------------------


def forwarding_echo_adopt(*, bag: Bag, platform_refund_id: str, note: str, actor: str) -> Refund | None:
    """The channel refund a platform refund is the echo of (our marker in its note), if it is one of
    this bag's forwarded refunds; it is accepted if it was still waiting (the webhook arrived before
    our create call returned, or that call's outcome was unknown)."""
    refund_id = forwarding_marker_refund_id(note)
    if refund_id is None:
        return None
    refund = Refund.objects.filter(pk=refund_id, bag=bag, forwarding__isnull=False).first()
    if refund is None:
        return None
    refund_forwarding_accept(
        refund_id=refund.pk,
        platform_refund_id=platform_refund_id,
        actor=actor,
        message=f"The platform's refund {platform_refund_id} is this refund (its webhook carries our marker); "
        "moving the money.",
    )
    refund.refresh_from_db()
    return refund


# --------------------------------------------------------------------------------------------------
# Operators (triage) and merchants (portal task list)
# --------------------------------------------------------------------------------------------------


def _forwarding_for_operator(refund: Refund, *, allowed: frozenset, action: str):
    forwarding = RefundForwarding.objects.select_for_update().filter(refund=refund).first()
    if forwarding is None:
        raise InvalidTransition("This refund is not forwarded to a platform.")
    if forwarding.state not in allowed:
        raise InvalidTransition(f"A forwarding {forwarding.get_state_display().lower()} cannot be {action}.")
    if Refund.objects.filter(pk=refund.pk).values_list("status", flat=True).first() != RefundStatus.PROCESSING:
        raise InvalidTransition("Only a PROCESSING refund waits for its platform.")
    return forwarding


def forwarding_operator_guard(refund: Refund, *, action: str) -> None:
    """What the generic repairs (retry, mark external, cancel) must not do to a forwarded refund:
    touch one its platform refused (it ended FAILED with nothing moved and its amounts and
    quantities already given back: the channel sends a new refund), or cancel one an earlier send may
    have recorded on the platform (the platform would show a refund the shopper never gets)."""
    # Row-locked: a forwarding task claiming it meanwhile either waits for this transaction (and then
    # finds the refund no longer PROCESSING) or has claimed it already (SENDING, refused below).
    forwarding = RefundForwarding.objects.select_for_update().filter(refund=refund).first()
    if forwarding is None:
        return
    if forwarding.state == ForwardingState.REFUSED:
        raise InvalidTransition(
            "The merchant's platform refused this refund and nothing moved; nothing is left to repair "
            f"(the channel sends a new refund). It cannot be {action}."
        )
    if (
        action == "canceled"
        and forwarding.state in IN_FLIGHT
        and (forwarding.sends > 0 or forwarding.state == ForwardingState.SENDING)
    ):
        raise InvalidTransition(
            "An earlier send may have recorded this refund on the merchant's platform: retry forwarding "
            "(it looks the refund up there first) or move the money without the platform instead."
        )


_OPERATOR_STATES = frozenset({ForwardingState.STALLED, ForwardingState.RETRYING, ForwardingState.PENDING})


def refund_forwarding_retry(*, refund: Refund, user=None, note: str = "") -> Refund:
    """Operator: send the refund to the platform again now, with a fresh attempt budget (a send that
    may have reached the platform is still looked up there first)."""
    with try_exclusive("forwarding", refund.pk) as acquired:
        if not acquired:
            raise InvalidTransition("The refund is being sent to its platform right now; try again in a moment.")
        with transaction.atomic():
            forwarding = _forwarding_for_operator(refund, allowed=_OPERATOR_STATES, action="retried")
            forwarding.state = ForwardingState.PENDING
            forwarding.attempts = 0
            forwarding.next_attempt_at = timezone.now()
            forwarding.save()
            event_record(
                refund,
                RefundEvent.Kind.FORWARDING,
                actor=operator_actor(user),
                user=user,
                message=note or "Forwarding to the platform retried by an operator.",
                data={"state": ForwardingState.PENDING, "operation": "retry-forwarding"},
            )
    # After the forwarding lock is released, else the send it enqueues finds it held and does nothing.
    transaction.on_commit(lambda: forwarding_enqueue(refund.pk))
    return refund


def refund_forwarding_bypass(*, refund: Refund, user=None, note: str) -> Refund:
    """Operator: move the money without the platform (it stays unreachable). The merchant is asked to
    mirror the refund by hand; if an earlier send did reach the platform, its echo still matches this
    refund by our marker, so the shopper is never refunded twice."""
    if not (note or "").strip():
        raise ValidationFailed("Say why the money moves without the platform.", field_errors={"note": ["Required."]})
    with try_exclusive("forwarding", refund.pk) as acquired:
        if not acquired:
            raise InvalidTransition("The refund is being sent to its platform right now; try again in a moment.")
        with transaction.atomic():
            forwarding = _forwarding_for_operator(refund, allowed=_OPERATOR_STATES, action="bypassed")
            forwarding.state = ForwardingState.BYPASSED
            forwarding.next_attempt_at = None
            forwarding.save()
            now = timezone.now()
            Refund.objects.filter(pk=refund.pk).update(next_attempt_at=now, date_last_modified=now)
            event_record(
                refund,
                RefundEvent.Kind.FORWARDING,
                actor=operator_actor(user),
                user=user,
                message=f"Money moves without the platform: {note}",
                data={"state": ForwardingState.BYPASSED, "operation": "move-money-without-platform"},
            )
    # After the forwarding lock is released, like refund_forwarding_retry.
    transaction.on_commit(lambda: enqueue_processing(refund.pk, due=now))
    transaction.on_commit(lambda: _mirror_email_send(refund.pk))
    return refund


def forwarding_mirror_mark(*, forwarding: RefundForwarding, done: bool, user=None) -> RefundForwarding:
    """Merchant: tick a "mirror this refund" task off (done) or back on (undo), audited."""
    if forwarding.state not in MIRROR_STATES:
        raise InvalidTransition("This refund was forwarded to your platform; there is nothing to mirror.")
    forwarding.mirror_done_at = timezone.now() if done else None
    forwarding.mirror_done_by = user if done else None
    forwarding.save(update_fields=["mirror_done_at", "mirror_done_by", "date_last_modified"])
    event_record(
        forwarding.refund,
        RefundEvent.Kind.NOTE,
        actor=f"merchant-user:{user.get_username()}" if user is not None else "merchant",
        user=user,
        message="The merchant mirrored this refund on the platform." if done else "The merchant undid 'mirrored'.",
        data={"mirror_done": done},
    )
    return forwarding


def _mirror_email_send(refund_id: int) -> None:
    """Tell the merchant's portal users which refund to mirror on their platform (Django mail)."""
    refund = Refund.objects.select_related("bag", "bag__merchant").filter(pk=refund_id).first()
    if refund is None:
        return
    merchant = refund.bag.merchant
    recipients = sorted({email for email in merchant.memberships.values_list("user__email", flat=True) if email})
    if not recipients:
        return
    lines = [
        f"The channel refunded {format_amount(refund.amount, refund.refund_currency)} of your order "
        f"{refund.bag.external_id or refund.bag_id} (refund {refund.pk}).",
        "We could not record it on your platform, so please record the same refund there by hand "
        "(as an offline/manual refund: the shopper's money is returned by the network) and tick it off "
        "in the portal under 'Refunds to mirror'.",
    ]
    for line in refund.skus.select_related("order_sku"):
        lines.append(f"  - {line.order_sku.name} x {line.quantity_refunded}")
    if refund.shipping_amount:
        lines.append(f"  - shipping {format_amount(refund.shipping_amount, refund.refund_currency)}")
    try:
        send_mail(
            subject=f"Please mirror refund {refund.pk} on order {refund.bag.external_id or refund.bag_id}",
            message="\n".join(lines),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except Exception:  # the portal task list still shows it
        logger.exception("Could not e-mail the merchant about refund %s", refund_id)

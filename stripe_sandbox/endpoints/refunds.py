"""Refunds: create (with the lifecycle the card or a fault gives them), retrieve and list.

Every read first applies the transitions that fell due (stripe_sandbox.lifecycle), as Stripe would
have applied them in the meantime.
"""

from .. import balances, clock, lifecycle, objects
from ..errors import StripeFailure, invalid_param, invalid_request, no_such
from ..ids import new_id
from ..models import FaultKind, SandboxPaymentIntent, SandboxRefund
from . import params as v
from .call import Call


def validate_create(params: dict) -> dict:
    v.known(params, {"payment_intent", "charge", "amount", "metadata", "reason", "expand"})
    cleaned = {
        "payment_intent": v.string(params, "payment_intent", max_length=64),
        "charge": v.string(params, "charge", max_length=64),
        "amount": v.amount(params, required=False),
        "metadata": v.metadata(params),
        "reason": v.string(params, "reason"),
    }
    if not cleaned["payment_intent"] and not cleaned["charge"]:
        raise StripeFailure(
            400,
            "invalid_request_error",
            "One of the following params should be provided for this request: payment_intent or charge.",
            code="parameter_missing",
            stored=False,
        )
    if cleaned["reason"] and cleaned["reason"] not in {"duplicate", "fraudulent", "requested_by_customer"}:
        raise invalid_param(
            "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
            param="reason",
            code="parameter_invalid",
        )
    return cleaned


def _charge_for_refund(p: dict) -> SandboxPaymentIntent:
    queryset = SandboxPaymentIntent.objects.select_for_update()
    if p["payment_intent"]:
        pi = queryset.filter(stripe_id=p["payment_intent"]).first()
        if pi is None:
            raise no_such("payment_intent", p["payment_intent"], param="payment_intent", status=400)
        if p["charge"] and pi.charge_id != p["charge"]:
            raise invalid_request(
                f"The charge {p['charge']} does not belong to PaymentIntent {pi.stripe_id}.", param="charge"
            )
        return pi
    pi = queryset.filter(charge_id=p["charge"]).first()
    if pi is None:
        raise no_such("charge", p["charge"], param="charge", status=400)
    return pi


def create(call: Call, p: dict) -> dict:
    pi = _charge_for_refund(p)
    if pi.status != "succeeded":
        raise invalid_request(
            f"This PaymentIntent ({pi.stripe_id}) does not have a successful charge to refund.",
            code="payment_intent_unexpected_state",
        )
    if pi.disputed or call.fault(FaultKind.CHARGE_DISPUTED):
        raise invalid_request(
            f"Charge {pi.charge_id} has been charged back; cannot issue a refund.", code="charge_disputed"
        )
    remaining = pi.amount - pi.amount_refunded
    if remaining == 0 or call.fault(FaultKind.CHARGE_ALREADY_REFUNDED):
        raise invalid_request(f"Charge {pi.charge_id} has already been refunded.", code="charge_already_refunded")
    amount = p["amount"] if p["amount"] is not None else remaining
    if amount > remaining:
        raise invalid_request(
            f"Refund amount ({v.money(amount, pi.currency)}) is greater than unrefunded amount on charge "
            f"({v.money(remaining, pi.currency)})",
            code="amount_too_large",
            param="amount",
        )
    now = clock.now()
    plan = lifecycle.plan_refund(pi, call.take(*lifecycle.LIFECYCLE_FAULTS), now)
    stripe_id = new_id("re")
    rf = SandboxRefund.objects.create(
        stripe_id=stripe_id,
        payment_intent=pi,
        amount=amount,
        currency=pi.currency,
        status=plan.status,
        pending_reason=plan.pending_reason,
        fails_on_next_read=plan.fails_on_next_read,
        settles_to=plan.settles_to,
        settles_at=plan.settles_at,
        settle_failure_reason=plan.failure_reason,
        reason=p["reason"],
        metadata=p["metadata"],
        balance_transaction=balances.post(balances.REFUND, pi.currency, -amount, source=stripe_id, at=now),
        created=now,
    )
    previous_refunded = pi.amount_refunded
    pi.amount_refunded += amount
    pi.save(update_fields=["amount_refunded"])
    lifecycle.announce_refund_created(rf, pi, previous_refunded, call.request)
    return objects.refund(rf, pi)


def retrieve(call: Call, p: dict) -> dict:
    queryset = SandboxRefund.objects.filter(stripe_id=call.path_args["id"])
    lifecycle.settle_due_refunds(queryset)
    rf = queryset.select_related("payment_intent").first()
    if rf is None:
        raise no_such("refund", call.path_args["id"], param="id")
    return objects.refund(rf)


def validate_list(params: dict) -> dict:
    v.known(params, {"payment_intent", "charge", "limit", "starting_after", "ending_before", "expand"})
    return {
        **v.list_params(params),
        "payment_intent": v.string(params, "payment_intent", max_length=64),
        "charge": v.string(params, "charge", max_length=64),
    }


def list_refunds(call: Call, p: dict) -> dict:
    queryset = SandboxRefund.objects.select_related("payment_intent")
    if p["payment_intent"]:
        queryset = queryset.filter(payment_intent__stripe_id=p["payment_intent"])
    if p["charge"]:
        queryset = queryset.filter(payment_intent__charge_id=p["charge"])
    lifecycle.settle_due_refunds(queryset)
    return objects.page(
        queryset,
        limit=p["limit"],
        starting_after=v.cursor(queryset, p["starting_after"], "starting_after"),
        ending_before=v.cursor(queryset, p["ending_before"], "ending_before"),
        url="/v1/refunds",
        render=objects.refund,
    )

"""PaymentIntents and their charges: create (and confirm with one of Stripe's test PaymentMethods), retrieve."""

from .. import balances, clock, lifecycle, objects
from ..errors import StripeFailure, invalid_request, no_such
from ..ids import new_id
from ..models import SandboxPaymentIntent
from . import params as v
from .call import Call

# Stripe's test PaymentMethods that change what happens to the charge or its refunds.
PM_DECLINED = "pm_card_chargeDeclined"
PM_DISPUTED = "pm_card_createDispute"
PM_REFUND_FAILS = "pm_card_refundFail"
PM_REFUND_PENDING = "pm_card_pendingRefund"


def validate_create(params: dict) -> dict:
    v.known(
        params,
        {
            "amount",
            "currency",
            "confirm",
            "payment_method",
            "payment_method_types",
            "metadata",
            "receipt_email",
            "description",
            "expand",
            "automatic_payment_methods",
            "transfer_group",
        },
    )
    return {
        "amount": v.amount(params),
        "currency": v.currency(params),
        "confirm": v.boolean(params, "confirm"),
        "payment_method": v.string(params, "payment_method", max_length=100),
        "metadata": v.metadata(params),
        "receipt_email": v.string(params, "receipt_email", max_length=254),
        "description": v.string(params, "description"),
    }


def create(call: Call, p: dict) -> dict:
    pi = SandboxPaymentIntent(
        stripe_id=new_id("pi"),
        created=clock.now(),
        amount=p["amount"],
        currency=p["currency"],
        payment_method=p["payment_method"],
        # A test token (pm_card_visa) becomes a PaymentMethod of its own, as Stripe creates one.
        payment_method_id=new_id("pm") if p["payment_method"].startswith("pm_card_") else p["payment_method"],
        receipt_email=p["receipt_email"],
        description=p["description"],
        metadata=p["metadata"],
        status="requires_confirmation" if p["payment_method"] else "requires_payment_method",
    )
    if not p["confirm"]:
        pi.save()
        return objects.payment_intent(pi)
    if not pi.payment_method:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the "
            "PaymentIntent with a payment method, provide `payment_method`.",
            code="payment_intent_unexpected_state",
        )
    if pi.payment_method == PM_DECLINED:
        pi.status = "requires_payment_method"
        pi.save()
        raise StripeFailure(
            402,
            "card_error",
            "Your card was declined.",
            code="card_declined",
            extra={"decline_code": "generic_decline", "payment_intent": objects.payment_intent(pi)},
        )
    pi.status = "succeeded"
    pi.charge_id = new_id("ch")
    pi.refunds_fail_later = pi.payment_method == PM_REFUND_FAILS
    pi.refunds_pending = pi.payment_method == PM_REFUND_PENDING
    pi.balance_transaction = balances.post(balances.CHARGE, pi.currency, pi.amount, source=pi.charge_id, at=pi.created)
    pi.save()
    if pi.payment_method == PM_DISPUTED:
        lifecycle.open_dispute(pi, request=call.request)
    return objects.payment_intent(pi)


def retrieve(call: Call, p: dict) -> dict:
    object_id = call.path_args["id"]
    pi = SandboxPaymentIntent.objects.filter(stripe_id=object_id).first()
    if pi is None:
        raise no_such("payment_intent", object_id, param="intent")
    return objects.payment_intent(pi)


def retrieve_charge(call: Call, p: dict) -> dict:
    object_id = call.path_args["id"]
    pi = SandboxPaymentIntent.objects.filter(charge_id=object_id).first()
    if pi is None:
        raise no_such("charge", object_id, param="id")
    return objects.charge(pi)

"""The Stripe endpoints the sandbox emulates: parameter validation, then execution against the database.

Each endpoint has two halves. `validate` checks the shape of the parameters and raises failures that
Stripe does not store under the idempotency key. `execute` runs inside the transaction that also
stores the response: it checks every business rule first and writes last, so a failure it raises
leaves no partial effect (only a consumed business fault, which is intended).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import balances, faults, objects
from .errors import StripeFailure, invalid_param, invalid_request, missing_param, no_such
from .ids import new_id
from .models import (
    FaultKind,
    SandboxAccount,
    SandboxPaymentIntent,
    SandboxRefund,
    SandboxTransfer,
    SandboxTransferReversal,
)

MAX_AMOUNT = 99_999_999
# Stripe's test PaymentMethods that change what happens to the charge.
PM_DECLINED = "pm_card_chargeDeclined"
PM_DISPUTED = "pm_card_createDispute"
PM_REFUND_FAILS = "pm_card_refundFail"
ASYNC_REFUND_FAILURE_REASON = "expired_or_canceled_card"


@dataclass
class Call:
    method: str
    path: str
    path_args: dict
    account: SandboxAccount | None  # the Stripe-Account header's connected account
    taken_faults: list = field(default_factory=list)

    def fault(self, kind: str) -> bool:
        """Consume a business fault for this call; True when one was pending."""
        taken = faults.take([kind], method=self.method, path=self.path)
        if taken is not None:
            self.taken_faults.append(taken.kind)
        return taken is not None


# --- parameter validation (failures here are never stored under the idempotency key) ---


def _known(params: dict, allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise invalid_param(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def _amount(params: dict, name: str = "amount", *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise missing_param(name)
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise invalid_param(f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer")
    value = int(raw)
    if value < 1:
        raise invalid_param(
            "This value must be greater than or equal to 1.", param=name, code="parameter_invalid_integer"
        )
    if value > MAX_AMOUNT:
        raise invalid_param(f"Amount must be no more than {MAX_AMOUNT}.", param=name, code="amount_too_large")
    return value


def _currency(params: dict) -> str:
    raw = params.get("currency")
    if not raw:
        raise missing_param("currency")
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise invalid_param(f"Invalid currency: {raw}.", param="currency", code="parameter_invalid")
    return raw.lower()


def _string(params: dict, name: str, *, required: bool = False, max_length: int = 5000) -> str:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise missing_param(name)
        return ""
    if not isinstance(raw, str):
        raise invalid_param(f"Invalid string: {name}.", param=name, code="parameter_invalid")
    if len(raw) > max_length:
        raise invalid_param(
            f"Invalid string: {name} must be at most {max_length} characters.",
            param=name,
            code="parameter_invalid_string_too_long",
        )
    return raw


def _boolean(params: dict, name: str) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    if raw not in ("true", "false"):
        raise invalid_param(f"Invalid boolean: {raw}", param=name, code="parameter_invalid")
    return raw == "true"


def _metadata(params: dict) -> dict:
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid_param("Invalid object", param="metadata", code="parameter_invalid")
    if len(raw) > 50:
        raise invalid_param("Metadata can have at most 50 keys.", param="metadata", code="parameter_invalid")
    metadata = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise invalid_param(f"Invalid metadata[{key}].", param=f"metadata[{key}]", code="parameter_invalid")
        if len(key) > 40 or len(value) > 500:
            raise invalid_param(
                "Metadata keys are at most 40 characters and values at most 500.",
                param=f"metadata[{key}]",
                code="parameter_invalid",
            )
        if value != "":  # an empty value unsets the key
            metadata[key] = value
    return metadata


def _expand(params: dict) -> list[str]:
    raw = params.get("expand")
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise invalid_param("Invalid array", param="expand", code="parameter_invalid")
    return raw


def _list_params(params: dict) -> dict:
    limit = 10
    if params.get("limit") not in (None, ""):
        raw = params["limit"]
        if not isinstance(raw, str) or not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise invalid_param(
                "This value must be between 1 and 100.", param="limit", code="parameter_invalid_integer"
            )
        limit = int(raw)
    return {
        "limit": limit,
        "starting_after": _string(params, "starting_after"),
        "ending_before": _string(params, "ending_before"),
        "expand": _expand(params),
    }


def _only_expand(params: dict) -> dict:
    _known(params, {"expand"})
    return {"expand": _expand(params)}


# --- payment intents and charges ---


def validate_create_payment_intent(params: dict) -> dict:
    _known(
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
        "amount": _amount(params),
        "currency": _currency(params),
        "confirm": _boolean(params, "confirm"),
        "payment_method": _string(params, "payment_method", max_length=100),
        "metadata": _metadata(params),
        "receipt_email": _string(params, "receipt_email", max_length=254),
        "description": _string(params, "description"),
        "expand": _expand(params),
    }


def create_payment_intent(call: Call, p: dict) -> dict:
    pi = SandboxPaymentIntent(
        stripe_id=new_id("pi"),
        amount=p["amount"],
        currency=p["currency"],
        payment_method=p["payment_method"],
        receipt_email=p["receipt_email"],
        description=p["description"],
        metadata=p["metadata"],
        status="requires_confirmation" if p["payment_method"] else "requires_payment_method",
    )
    if not p["confirm"]:
        pi.save()
        return objects.payment_intent(pi, p["expand"])
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
    pi.disputed = pi.payment_method == PM_DISPUTED
    pi.refunds_fail_later = pi.payment_method == PM_REFUND_FAILS
    pi.save()
    balances.adjust(balances.platform_account(), pi.currency, pi.amount)
    return objects.payment_intent(pi, p["expand"])


def retrieve_payment_intent(call: Call, p: dict) -> dict:
    object_id = call.path_args["id"]
    pi = SandboxPaymentIntent.objects.filter(stripe_id=object_id).first()
    if pi is None:
        raise no_such("payment_intent", object_id, param="intent")
    return objects.payment_intent(pi, p["expand"])


def retrieve_charge(call: Call, p: dict) -> dict:
    object_id = call.path_args["id"]
    pi = SandboxPaymentIntent.objects.filter(charge_id=object_id).first()
    if pi is None:
        raise no_such("charge", object_id, param="id")
    return objects.charge(pi)


# --- transfers and reversals ---


def validate_create_transfer(params: dict) -> dict:
    _known(
        params,
        {
            "amount",
            "currency",
            "destination",
            "source_transaction",
            "transfer_group",
            "metadata",
            "description",
            "expand",
        },
    )
    return {
        "amount": _amount(params),
        "currency": _currency(params),
        "destination": _string(params, "destination", required=True, max_length=64),
        "source_transaction": _string(params, "source_transaction", max_length=64),
        "transfer_group": _string(params, "transfer_group", max_length=255),
        "metadata": _metadata(params),
        "description": _string(params, "description"),
    }


def create_transfer(call: Call, p: dict) -> dict:
    destination = balances.connected_account(p["destination"])
    if destination is None:
        raise no_such("destination", p["destination"], param="destination", status=400)
    if p["source_transaction"]:
        source = SandboxPaymentIntent.objects.filter(charge_id=p["source_transaction"]).first()
        if source is None:
            raise no_such("charge", p["source_transaction"], param="source_transaction", status=400)
    tr = SandboxTransfer.objects.create(
        stripe_id=new_id("tr"),
        destination=destination,
        amount=p["amount"],
        currency=p["currency"],
        source_transaction=p["source_transaction"],
        transfer_group=p["transfer_group"],
        description=p["description"],
        metadata=p["metadata"],
    )
    balances.adjust(destination, tr.currency, tr.amount)
    balances.adjust(balances.platform_account(), tr.currency, -tr.amount)
    return objects.transfer(tr)


def _transfer_or_404(transfer_id: str, *, lock: bool = False) -> SandboxTransfer:
    queryset = SandboxTransfer.objects.select_related("destination")
    if lock:
        queryset = queryset.select_for_update()
    tr = queryset.filter(stripe_id=transfer_id).first()
    if tr is None:
        raise no_such("transfer", transfer_id, param="id")
    return tr


def retrieve_transfer(call: Call, p: dict) -> dict:
    return objects.transfer(_transfer_or_404(call.path_args["id"]))


def validate_create_reversal(params: dict) -> dict:
    _known(params, {"amount", "metadata", "description", "refund_application_fee", "expand"})
    _boolean(params, "refund_application_fee")
    return {
        "amount": _amount(params, required=False),
        "metadata": _metadata(params),
        "description": _string(params, "description"),
    }


def _money(amount: int, currency: str) -> str:
    text = f"{amount // 100}.{amount % 100:02d}"
    return f"${text}" if currency == "usd" else f"{text} {currency.upper()}"


def create_reversal(call: Call, p: dict) -> dict:
    tr = _transfer_or_404(call.path_args["id"], lock=True)
    remaining = tr.amount - tr.amount_reversed
    if remaining == 0:
        raise invalid_request(
            f"Transfer {tr.stripe_id} has already been fully reversed.", code="amount_too_large", param="amount"
        )
    amount = p["amount"] if p["amount"] is not None else remaining
    if amount > remaining:
        raise invalid_request(
            f"You have attempted to reverse {_money(amount, tr.currency)}, which exceeds the remaining "
            f"{_money(remaining, tr.currency)} on transfer {tr.stripe_id}.",
            code="amount_too_large",
            param="amount",
        )
    connected = balances.locked_balance(tr.destination, tr.currency)
    if connected.available < amount or call.fault(FaultKind.BALANCE_INSUFFICIENT):
        raise invalid_request(
            f"Insufficient funds in the connected account {tr.destination.stripe_id} to reverse "
            f"{_money(amount, tr.currency)} of transfer {tr.stripe_id}.",
            code="balance_insufficient",
        )
    reversal = SandboxTransferReversal.objects.create(
        stripe_id=new_id("trr"),
        transfer=tr,
        amount=amount,
        currency=tr.currency,
        description=p["description"],
        metadata=p["metadata"],
    )
    tr.amount_reversed += amount
    tr.save(update_fields=["amount_reversed"])
    balances.adjust(tr.destination, tr.currency, -amount)
    balances.adjust(balances.platform_account(), tr.currency, amount)
    return objects.transfer_reversal(reversal, tr)


def validate_list(params: dict) -> dict:
    _known(params, {"limit", "starting_after", "ending_before", "expand"})
    return _list_params(params)


def _cursor(queryset, cursor_id: str, param: str):
    if not cursor_id:
        return None
    item = queryset.filter(stripe_id=cursor_id).first()
    if item is None:
        raise no_such("object", cursor_id, param=param, status=400)
    return item


def list_reversals(call: Call, p: dict) -> dict:
    tr = _transfer_or_404(call.path_args["id"])
    queryset = tr.reversals.all()
    return objects.page(
        queryset,
        limit=p["limit"],
        starting_after=_cursor(queryset, p["starting_after"], "starting_after"),
        ending_before=_cursor(queryset, p["ending_before"], "ending_before"),
        url=f"/v1/transfers/{tr.stripe_id}/reversals",
        render=lambda item: objects.transfer_reversal(item, tr),
    )


def retrieve_reversal(call: Call, p: dict) -> dict:
    tr = _transfer_or_404(call.path_args["transfer"])
    reversal = tr.reversals.filter(stripe_id=call.path_args["id"]).first()
    if reversal is None:
        raise no_such("transfer_reversal", call.path_args["id"], param="id")
    return objects.transfer_reversal(reversal, tr)


# --- refunds ---


def validate_create_refund(params: dict) -> dict:
    _known(params, {"payment_intent", "charge", "amount", "metadata", "reason", "expand"})
    cleaned = {
        "payment_intent": _string(params, "payment_intent", max_length=64),
        "charge": _string(params, "charge", max_length=64),
        "amount": _amount(params, required=False),
        "metadata": _metadata(params),
        "reason": _string(params, "reason"),
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


def create_refund(call: Call, p: dict) -> dict:
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
            f"Refund amount ({_money(amount, pi.currency)}) is greater than unrefunded amount on charge "
            f"({_money(remaining, pi.currency)})",
            code="amount_too_large",
            param="amount",
        )
    fails_later = pi.refunds_fail_later or call.fault(FaultKind.REFUND_FAILS_ASYNC)
    rf = SandboxRefund.objects.create(
        stripe_id=new_id("re"),
        payment_intent=pi,
        amount=amount,
        currency=pi.currency,
        status="pending" if fails_later else "succeeded",
        fails_on_next_read=fails_later,
        reason=p["reason"],
        metadata=p["metadata"],
    )
    pi.amount_refunded += amount
    pi.save(update_fields=["amount_refunded"])
    balances.adjust(balances.platform_account(), pi.currency, -amount)
    return objects.refund(rf)


def fail_pending_refunds(queryset) -> None:
    """A refund marked to fail asynchronously turns failed when it is next read; its money returns."""
    for refund_id in queryset.filter(fails_on_next_read=True).values_list("pk", flat=True):
        pi_pk = SandboxRefund.objects.filter(pk=refund_id).values_list("payment_intent_id", flat=True).get()
        pi = SandboxPaymentIntent.objects.select_for_update().get(pk=pi_pk)  # lock order: charge, refund
        rf = SandboxRefund.objects.select_for_update().get(pk=refund_id)
        if not rf.fails_on_next_read:
            continue  # another reader flipped it first
        rf.status = "failed"
        rf.failure_reason = ASYNC_REFUND_FAILURE_REASON
        rf.fails_on_next_read = False
        rf.save(update_fields=["status", "failure_reason", "fails_on_next_read"])
        pi.amount_refunded -= rf.amount
        pi.save(update_fields=["amount_refunded"])
        balances.adjust(balances.platform_account(), pi.currency, rf.amount)


def retrieve_refund(call: Call, p: dict) -> dict:
    queryset = SandboxRefund.objects.filter(stripe_id=call.path_args["id"])
    fail_pending_refunds(queryset)
    rf = queryset.select_related("payment_intent").first()
    if rf is None:
        raise no_such("refund", call.path_args["id"], param="id")
    return objects.refund(rf)


def validate_list_refunds(params: dict) -> dict:
    _known(params, {"payment_intent", "charge", "limit", "starting_after", "ending_before", "expand"})
    return {
        **_list_params(params),
        "payment_intent": _string(params, "payment_intent", max_length=64),
        "charge": _string(params, "charge", max_length=64),
    }


def list_refunds(call: Call, p: dict) -> dict:
    queryset = SandboxRefund.objects.select_related("payment_intent")
    if p["payment_intent"]:
        queryset = queryset.filter(payment_intent__stripe_id=p["payment_intent"])
    if p["charge"]:
        queryset = queryset.filter(payment_intent__charge_id=p["charge"])
    fail_pending_refunds(queryset)
    return objects.page(
        queryset,
        limit=p["limit"],
        starting_after=_cursor(queryset, p["starting_after"], "starting_after"),
        ending_before=_cursor(queryset, p["ending_before"], "ending_before"),
        url="/v1/refunds",
        render=objects.refund,
    )


# --- balance ---


def retrieve_balance(call: Call, p: dict) -> dict:
    return objects.balance(call.account or balances.platform_account())


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: re.Pattern
    validate: Callable[[dict], dict]
    execute: Callable[[Call, dict], dict]


def _endpoint(method: str, path: str, validate, execute) -> Endpoint:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Endpoint(method, re.compile(f"^{regex}$"), validate, execute)


ENDPOINTS = [
    _endpoint("POST", "/v1/payment_intents", validate_create_payment_intent, create_payment_intent),
    _endpoint("GET", "/v1/payment_intents/{id}", _only_expand, retrieve_payment_intent),
    _endpoint("GET", "/v1/charges/{id}", _only_expand, retrieve_charge),
    _endpoint("POST", "/v1/transfers", validate_create_transfer, create_transfer),
    _endpoint("GET", "/v1/transfers/{id}", _only_expand, retrieve_transfer),
    _endpoint("POST", "/v1/transfers/{id}/reversals", validate_create_reversal, create_reversal),
    _endpoint("GET", "/v1/transfers/{id}/reversals", validate_list, list_reversals),
    _endpoint("GET", "/v1/transfers/{transfer}/reversals/{id}", _only_expand, retrieve_reversal),
    _endpoint("POST", "/v1/refunds", validate_create_refund, create_refund),
    _endpoint("GET", "/v1/refunds", validate_list_refunds, list_refunds),
    _endpoint("GET", "/v1/refunds/{id}", _only_expand, retrieve_refund),
    _endpoint("GET", "/v1/balance", _only_expand, retrieve_balance),
]


def route(method: str, path: str) -> tuple[Endpoint, dict] | None:
    for endpoint in ENDPOINTS:
        if endpoint.method != method:
            continue
        match = endpoint.pattern.match(path)
        if match:
            return endpoint, match.groupdict()
    return None

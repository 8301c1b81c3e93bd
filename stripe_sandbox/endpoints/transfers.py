"""Transfers to connected accounts and their reversals."""

from .. import balances, clock, events, objects
from ..errors import invalid_request, no_such
from ..ids import new_id
from ..models import FaultKind, SandboxPaymentIntent, SandboxTransfer, SandboxTransferReversal
from . import params as v
from .call import Call


def validate_create(params: dict) -> dict:
    v.known(
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
        "amount": v.amount(params),
        "currency": v.currency(params),
        "destination": v.string(params, "destination", required=True, max_length=64),
        "source_transaction": v.string(params, "source_transaction", max_length=64),
        "transfer_group": v.string(params, "transfer_group", max_length=255),
        "metadata": v.metadata(params),
        "description": v.string(params, "description"),
    }


def create(call: Call, p: dict) -> dict:
    destination = balances.connected_account(p["destination"])
    if destination is None:
        raise no_such("destination", p["destination"], param="destination", status=400)
    if p["source_transaction"]:
        source = SandboxPaymentIntent.objects.filter(charge_id=p["source_transaction"]).first()
        if source is None:
            raise no_such("charge", p["source_transaction"], param="source_transaction", status=400)
    tr = SandboxTransfer(
        stripe_id=new_id("tr"),
        created=clock.now(),
        destination=destination,
        amount=p["amount"],
        currency=p["currency"],
        source_transaction=p["source_transaction"],
        transfer_group=p["transfer_group"],
        description=p["description"],
        metadata=p["metadata"],
    )
    balances.adjust(destination, tr.currency, tr.amount)
    tr.balance_transaction = balances.post(
        balances.TRANSFER, tr.currency, -tr.amount, source=tr.stripe_id, at=tr.created
    )
    tr.save()
    return objects.transfer(tr)


def _transfer_or_404(transfer_id: str, *, lock: bool = False) -> SandboxTransfer:
    queryset = SandboxTransfer.objects.select_related("destination")
    if lock:
        queryset = queryset.select_for_update()
    tr = queryset.filter(stripe_id=transfer_id).first()
    if tr is None:
        raise no_such("transfer", transfer_id, param="id")
    return tr


def retrieve(call: Call, p: dict) -> dict:
    return objects.transfer(_transfer_or_404(call.path_args["id"]))


def validate_create_reversal(params: dict) -> dict:
    v.known(params, {"amount", "metadata", "description", "refund_application_fee", "expand"})
    v.boolean(params, "refund_application_fee")
    return {
        "amount": v.amount(params, required=False),
        "metadata": v.metadata(params),
        "description": v.string(params, "description"),
    }


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
            f"You have attempted to reverse {v.money(amount, tr.currency)}, which exceeds the remaining "
            f"{v.money(remaining, tr.currency)} on transfer {tr.stripe_id}.",
            code="amount_too_large",
            param="amount",
        )
    connected = balances.locked_balance(tr.destination, tr.currency)
    if connected.available < amount or call.fault(FaultKind.BALANCE_INSUFFICIENT):
        raise invalid_request(
            f"Insufficient funds in the connected account {tr.destination.stripe_id} to reverse "
            f"{v.money(amount, tr.currency)} of transfer {tr.stripe_id}.",
            code="balance_insufficient",
        )
    reversal = SandboxTransferReversal(
        stripe_id=new_id("trr"),
        created=clock.now(),
        transfer=tr,
        amount=amount,
        currency=tr.currency,
        description=p["description"],
        metadata=p["metadata"],
    )
    balances.adjust(tr.destination, tr.currency, -amount)
    reversal.balance_transaction = balances.post(
        balances.TRANSFER_REVERSAL, tr.currency, amount, source=reversal.stripe_id, at=reversal.created
    )
    reversal.save()
    previous: dict = {"amount_reversed": tr.amount_reversed}
    tr.amount_reversed += amount
    if tr.amount_reversed == tr.amount:
        previous["reversed"] = False
    tr.save(update_fields=["amount_reversed"])
    events.emit(
        "transfer.reversed",
        objects.transfer(tr),
        previous_attributes=previous,
        request_id=call.request_id,
        idempotency_key=call.idempotency_key,
    )
    return objects.transfer_reversal(reversal, tr)


def list_reversals(call: Call, p: dict) -> dict:
    tr = _transfer_or_404(call.path_args["id"])
    queryset = tr.reversals.all()
    return objects.page(
        queryset,
        limit=p["limit"],
        starting_after=v.cursor(queryset, p["starting_after"], "starting_after"),
        ending_before=v.cursor(queryset, p["ending_before"], "ending_before"),
        url=f"/v1/transfers/{tr.stripe_id}/reversals",
        render=lambda item: objects.transfer_reversal(item, tr),
    )


def retrieve_reversal(call: Call, p: dict) -> dict:
    tr = _transfer_or_404(call.path_args["transfer"])
    reversal = tr.reversals.filter(stripe_id=call.path_args["id"]).first()
    if reversal is None:
        raise no_such("transfer_reversal", call.path_args["id"], param="id")
    return objects.transfer_reversal(reversal, tr)

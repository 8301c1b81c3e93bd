"""The sandbox's objects and errors against the installed stripe-python's typed classes.

The SDK is the reference: for every object type the sandbox returns, the raw JSON carries exactly the
fields the SDK's class declares (`__annotations__`), each value fits its annotation (types, and values
within the `Literal`s Stripe declares), and every error body fits `ErrorObject`. Bumping the stripe
pin re-runs these checks against the new classes.
"""

import json
import types
import typing

import pytest
import stripe
from stripe._error_object import ErrorObject
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject

from stripe_sandbox import ledger
from stripe_sandbox.models import FaultKind, RefundFailureReason
from stripe_sandbox.transport import handle
from tests.payments.sandbox_requests import pay, refund, reverse, transfer

pytestmark = pytest.mark.django_db

# Declared by the SDK but absent from what Stripe returns for these objects (why, per field).
NOT_RETURNED = {
    # `account` only on events of connected accounts, `context` only on v2 event destinations.
    "event": {"account", "context"},
    # `deleted` only on a deleted account.
    "account": {"deleted"},
}
# Stripe's documented enums where the SDK types the field as a plain str.
DOCUMENTED = {
    ("refund", "status"): {"pending", "requires_action", "succeeded", "failed", "canceled"},
    ("refund", "failure_reason"): set(RefundFailureReason.values),
}
SDK_CLASSES = {
    "payment_intent": stripe.PaymentIntent,
    "charge": stripe.Charge,
    "refund": stripe.Refund,
    "transfer": stripe.Transfer,
    "transfer_reversal": stripe.TransferReversal,
    "balance_transaction": stripe.BalanceTransaction,
    "dispute": stripe.Dispute,
    "balance": stripe.Balance,
    "event": stripe.Event,
    "account": stripe.Account,
}


def raw(method: str, path: str, params: str = "") -> tuple[int, dict]:
    body, status, _ = handle(
        method,
        f"https://api.stripe.com{path}" + (f"?{params}" if method == "GET" and params else ""),
        {"Authorization": "Bearer sk_test_sandbox"},
        params if method == "POST" else None,
    )
    return status, json.loads(body)


def _fields(cls) -> dict:
    return {name: annotation for name, annotation in cls.__annotations__.items() if name != "OBJECT_NAME"}


def problems(value, annotation, where: str) -> list[str]:
    """Why `value` does not fit `annotation` (empty when it does)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        # Literal[...] | str: the SDK accepts future values, the sandbox must use a declared one.
        literals = [value for arg in args if typing.get_origin(arg) is typing.Literal for value in typing.get_args(arg)]
        if literals and isinstance(value, str):
            return [] if value in literals else [f"{where}: {value!r} not in {literals}"]
        options = [problems(value, arg, where) for arg in args if arg is not type(None)]
        if any(not found for found in options):
            return []
        return [f"{where}: {value!r} fits none of {annotation}"]
    if value is None:
        return [f"{where}: null where the SDK declares {annotation}"]
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} not in {args}"]
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's own spelling
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [found for i, item in enumerate(value) for found in problems(item, args[0], f"{where}[{i}]")]
    if origin is typing.ClassVar:
        return []
    if isinstance(annotation, typing.ForwardRef):
        # An expandable reference: an id, or the object itself when expanded.
        return [] if isinstance(value, str | dict) else [f"{where}: neither id nor object"]
    if origin is not None and isinstance(origin, type) and issubclass(origin, ListObject):
        return _list_problems(value, args[0] if args else None, where)
    if isinstance(origin, type) and issubclass(origin, StripeObject):  # UntypedStripeObject[str]: a map
        return [] if isinstance(value, dict) else [f"{where}: not an object"]
    if isinstance(annotation, type) and issubclass(annotation, StripeObject):
        return object_problems(value, annotation, where, exact=False)
    if annotation is bool:
        return [] if isinstance(value, bool) else [f"{where}: not a bool"]
    if annotation is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: not an int"]
    if annotation is float:
        return [] if isinstance(value, int | float) else [f"{where}: not a number"]
    if annotation is str:
        return [] if isinstance(value, str) else [f"{where}: not a string"]
    if annotation is typing.Any:
        return []
    return [f"{where}: unchecked annotation {annotation}"]


def _list_problems(value, item_annotation, where: str) -> list[str]:
    if not isinstance(value, dict) or set(value) != {"object", "data", "has_more", "url"}:
        return [f"{where}: a list has exactly object, data, has_more, url; got {sorted(value)}"]
    found = [] if value["object"] == "list" else [f"{where}.object is not 'list'"]
    if isinstance(item_annotation, typing.ForwardRef):
        cls = SDK_CLASSES.get(
            {"Refund": "refund", "TransferReversal": "transfer_reversal"}.get(item_annotation.__forward_arg__, "")
        )
        for i, item in enumerate(value["data"]):
            found += object_problems(item, cls, f"{where}.data[{i}]") if cls else []
    return found


def object_problems(body, cls, where: str, *, exact: bool = True) -> list[str]:
    """Field names against the SDK class (exact for top-level objects: nested payment-method-specific
    hashes carry only the applicable type, as Stripe's do) and every value against its annotation."""
    if not isinstance(body, dict):
        return [f"{where}: not an object"]
    declared = _fields(cls)
    object_name = body.get("object") if isinstance(body.get("object"), str) else ""
    expected = set(declared) - NOT_RETURNED.get(object_name, set())
    found = [f"{where}.{name}: not declared by stripe.{cls.__name__}" for name in sorted(set(body) - set(declared))]
    if exact:
        found += [f"{where}.{name}: missing" for name in sorted(expected - set(body))]
    for name, value in body.items():
        if name in declared:
            found += problems(value, declared[name], f"{where}.{name}")
        allowed = DOCUMENTED.get((object_name, name))
        if allowed is not None and value is not None and value not in allowed:
            found.append(f"{where}.{name}: {value!r} is not one of Stripe's documented values")
    return found


def assert_conforms(body: dict, object_type: str | None = None) -> None:
    object_type = object_type or body["object"]
    assert object_problems(body, SDK_CLASSES[object_type], object_type) == []


@pytest.fixture
def world(stripe_client):
    """One of each object: a paid charge, a transfer and its reversal, refunds in every status, a dispute."""
    merchant = ledger.create_account(balance=0)
    intent = pay(stripe_client, 10_000)
    tr = transfer(stripe_client, merchant, 6_000, source_transaction=intent.latest_charge)
    reversal = reverse(stripe_client, tr.id, 1_000)
    succeeded = refund(stripe_client, intent.id, 1_000, key="r-ok")
    ledger.inject_fault(FaultKind.REFUND_PENDING, settle_after_seconds=3_600)
    pending = refund(stripe_client, intent.id, 1_000, key="r-pending")
    ledger.inject_fault(FaultKind.REFUND_PENDING_FAILS, failure_reason="lost_or_stolen_card")
    failed = refund(stripe_client, intent.id, 1_000, key="r-failed")
    ledger.inject_fault(FaultKind.REFUND_PENDING_CANCELED)
    canceled = refund(stripe_client, intent.id, 1_000, key="r-canceled")
    disputed = pay(stripe_client, 2_000, key="pay-dispute", payment_method="pm_card_createDispute")
    return {
        "intent": intent.id,
        "charge": intent.latest_charge,
        "transfer": tr.id,
        "reversal": reversal.id,
        "refunds": {"succeeded": succeeded.id, "pending": pending.id, "failed": failed.id, "canceled": canceled.id},
        "disputed_charge": disputed.latest_charge,
    }


def test_every_object_the_sandbox_returns_matches_the_sdk_classes(world):
    status, intent = raw("GET", f"/v1/payment_intents/{world['intent']}")
    assert status == 200
    assert_conforms(intent)
    assert intent["payment_method"].startswith("pm_") and intent["payment_method"] != "pm_card_visa"
    charge = raw("GET", f"/v1/charges/{world['charge']}")[1]
    assert_conforms(charge)
    assert_conforms(raw("GET", f"/v1/transfers/{world['transfer']}")[1])
    assert_conforms(raw("GET", f"/v1/transfers/{world['transfer']}/reversals/{world['reversal']}")[1])
    assert_conforms(raw("GET", "/v1/balance")[1])
    expanded = raw("GET", f"/v1/transfers/{world['transfer']}", "expand[0]=destination")[1]["destination"]
    assert expanded["object"] == "account"
    assert_conforms(expanded)
    assert raw("GET", f"/v1/accounts/{expanded['id']}")[1] == expanded

    refunds = {status: raw("GET", f"/v1/refunds/{refund_id}")[1] for status, refund_id in world["refunds"].items()}
    assert {status: body["status"] for status, body in refunds.items()} == {
        "succeeded": "succeeded",
        "pending": "pending",
        "failed": "failed",
        "canceled": "canceled",
    }
    for body in refunds.values():
        assert_conforms(body)
        assert body["balance_transaction"].startswith("txn_")
        assert_conforms(raw("GET", f"/v1/balance_transactions/{body['balance_transaction']}")[1])
    assert refunds["failed"]["failure_reason"] == "lost_or_stolen_card"
    assert refunds["failed"]["failure_balance_transaction"].startswith("txn_")
    assert refunds["pending"]["pending_reason"] == "processing"

    for source in (charge, raw("GET", f"/v1/transfers/{world['transfer']}")[1]):
        assert_conforms(raw("GET", f"/v1/balance_transactions/{source['balance_transaction']}")[1])

    dispute_event = ledger.events("charge.dispute.created")[0].body
    assert_conforms(dispute_event)
    assert_conforms(dispute_event["data"]["object"])
    assert_conforms(raw("GET", f"/v1/disputes/{dispute_event['data']['object']['id']}")[1])


def test_every_event_and_its_object_match_the_sdk_classes(world):
    assert ledger.sweep().refunds_settled == 2  # the failed and the canceled refund fell due
    emitted = ledger.events()
    assert {event.type for event in emitted} >= {
        "refund.created",
        "charge.refunded",
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
        "transfer.reversed",
        "charge.dispute.created",
    }
    for event in emitted:
        assert_conforms(event.body)
        assert_conforms(event.body["data"]["object"])


def test_lists_match_stripes_list_shape(world):
    refunds = raw("GET", "/v1/refunds", f"payment_intent={world['intent']}")[1]
    reversals = raw("GET", f"/v1/transfers/{world['transfer']}/reversals")[1]
    events = raw("GET", "/v1/events", "limit=3")[1]

    assert _list_problems(refunds, typing.ForwardRef("Refund"), "refunds") == []
    assert _list_problems(reversals, typing.ForwardRef("TransferReversal"), "reversals") == []
    assert set(events) == {"object", "data", "has_more", "url"} and len(events["data"]) == 3


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/v1/refunds/re_missing", ""),  # 404 resource_missing
        ("POST", "/v1/refunds", "amount=100"),  # 400 parameter_missing
        ("POST", "/v1/payment_intents", "amount=100&currency=usd&confirm=true&payment_method=pm_card_chargeDeclined"),
        ("GET", "/v1/refunds/re_x", "expand[0]=destination"),  # cannot be expanded
        ("GET", "/v1/nothing_here", ""),  # unrecognized URL
    ],
)
def test_every_error_body_matches_the_sdk_error_object(method, path, params):
    status, body = raw(method, path, params)

    assert status >= 400 and set(body) == {"error"}
    assert object_problems(body["error"], ErrorObject, "error", exact=False) == []
    assert body["error"]["type"] in {"api_error", "card_error", "idempotency_error", "invalid_request_error"}


def test_refund_lifecycle_transitions(stripe_client):
    """Every transition the sandbox applies, and only those Stripe documents."""
    intent = pay(stripe_client, 10_000)
    cases = [
        (FaultKind.REFUND_PENDING, ["pending", "succeeded"]),
        (FaultKind.REFUND_PENDING_FAILS, ["pending", "failed"]),
        (FaultKind.REFUND_PENDING_CANCELED, ["pending", "canceled"]),
        (FaultKind.REFUND_FAILS_LATER, ["succeeded", "failed"]),
        (FaultKind.REFUND_FAILS_ASYNC, ["pending", "failed"]),
    ]
    for n, (kind, expected) in enumerate(cases):
        ledger.inject_fault(kind, settle_after_seconds=60)
        created = refund(stripe_client, intent.id, 100, key=f"lifecycle-{n}")
        ledger.advance_clock(60)
        settled = stripe_client.v1.refunds.retrieve(created.id)
        assert [created.status, settled.status] == expected, kind

    with pytest.raises(ValueError):
        ledger.schedule_refund(settled.id, "succeeded")  # a failed refund never succeeds


def test_the_checker_catches_what_it_is_for():
    """A missing field, an undeclared one, an embedded list's total_count and a value outside a Literal."""
    status, body = raw("GET", "/v1/balance")
    assert status == 200
    broken = {**body, "total_count": 1}
    del broken["pending"]

    found = object_problems(broken, stripe.Balance, "balance")
    assert "balance.total_count: not declared by stripe.Balance" in found and "balance.pending: missing" in found
    assert _list_problems(
        {"object": "list", "data": [], "has_more": False, "url": "/v1/x", "total_count": 0}, None, "l"
    )
    assert problems("sometimes", stripe.PaymentIntent.__annotations__["capture_method"], "pi.capture_method")
    assert problems("manual", stripe.PaymentIntent.__annotations__["capture_method"], "pi.capture_method") == []
    assert problems(None, stripe.PaymentIntent.__annotations__["capture_method"], "pi.capture_method")
    assert object_problems({"object": "refund", "status": "done"}, stripe.Refund, "refund", exact=False) == [
        "refund.status: 'done' is not one of Stripe's documented values"
    ]

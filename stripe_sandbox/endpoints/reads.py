"""Read-only resources: connected accounts, the balance, balance transactions, disputes and events."""

import re

from .. import balances, objects
from ..errors import invalid_param, no_such
from ..models import SandboxBalanceTransaction, SandboxDispute, SandboxEvent
from . import params as v
from .call import Call


def retrieve_balance(call: Call, p: dict) -> dict:
    return objects.balance(call.account or balances.platform_account())


def retrieve_account(call: Call, p: dict) -> dict:
    account = balances.connected_account(call.path_args["id"])
    if account is None:
        raise no_such("account", call.path_args["id"], param="account")
    return objects.account(account)


def retrieve_balance_transaction(call: Call, p: dict) -> dict:
    txn = SandboxBalanceTransaction.objects.filter(stripe_id=call.path_args["id"]).first()
    if txn is None:
        raise no_such("balance_transaction", call.path_args["id"], param="id")
    return objects.balance_transaction(txn)


def retrieve_dispute(call: Call, p: dict) -> dict:
    dp = SandboxDispute.objects.select_related("payment_intent").filter(stripe_id=call.path_args["id"]).first()
    if dp is None:
        raise no_such("dispute", call.path_args["id"], param="dispute")
    return objects.dispute(dp)


def retrieve_event(call: Call, p: dict) -> dict:
    event = SandboxEvent.objects.filter(stripe_id=call.path_args["id"]).first()
    if event is None:
        raise no_such("event", call.path_args["id"], param="id")
    return event.body


_CREATED_FILTERS = {"gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}


def _created(params: dict) -> dict:
    """`created=<unix>` or `created[gte]=<unix>` ... as a queryset filter on the unix time."""
    raw = params.get("created")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        raw = {"eq": raw}
    if not isinstance(raw, dict) or any(op not in {"eq", *_CREATED_FILTERS} for op in raw):
        raise invalid_param("Invalid created filter.", param="created", code="parameter_invalid")
    filters = {}
    for op, value in raw.items():
        if not isinstance(value, str) or not re.fullmatch(r"\d+", value):
            raise invalid_param(f"Invalid integer: {value}", param=f"created[{op}]", code="parameter_invalid_integer")
        filters["body__created" if op == "eq" else f"body__created__{op}"] = int(value)
    return filters


def validate_list_events(params: dict) -> dict:
    v.known(
        params, {"type", "types", "created", "limit", "starting_after", "ending_before", "expand", "delivery_success"}
    )
    types = params.get("types") or []
    if not isinstance(types, list) or not all(isinstance(item, str) for item in types):
        raise invalid_param("Invalid array", param="types", code="parameter_invalid")
    return {
        **v.list_params(params),
        "type": v.string(params, "type", max_length=100),
        "types": types,
        "created": _created(params),
    }


def _type_filter(queryset, pattern: str):
    """Stripe's `type` filter: an exact type, or a wildcard such as `charge.*` or `charge.refund.*`."""
    if "*" in pattern:
        return queryset.filter(type__regex="^" + re.escape(pattern).replace(r"\*", ".*") + "$")
    return queryset.filter(type=pattern)


def list_events(call: Call, p: dict) -> dict:
    queryset = SandboxEvent.objects.all()
    if p["type"]:
        queryset = _type_filter(queryset, p["type"])
    if p["types"]:
        queryset = queryset.filter(type__in=p["types"])
    if p["created"]:
        queryset = queryset.filter(**p["created"])
    return objects.page(
        queryset,
        limit=p["limit"],
        starting_after=v.cursor(queryset, p["starting_after"], "starting_after"),
        ending_before=v.cursor(queryset, p["ending_before"], "ending_before"),
        url="/v1/events",
        render=lambda event: event.body,
    )

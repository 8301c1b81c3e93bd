"""The Stripe endpoints the sandbox emulates, one module per resource: parameter validation, then
execution against the database.

Each endpoint has two halves. `validate` checks the shape of the parameters and raises failures that
Stripe does not store under the idempotency key. `execute` runs inside the transaction that also
stores the response: it checks every business rule first and writes last, so a failure it raises
leaves no partial effect (only a consumed business fault, which is intended). `renders` names what
the endpoint returns, for `expand[]` (stripe_sandbox.expansion).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import params, payment_intents, reads, refunds, transfers
from .call import Call

__all__ = ["ENDPOINTS", "Call", "Endpoint", "route"]


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: re.Pattern
    validate: Callable[[dict], dict]
    execute: Callable[[Call, dict], dict]
    renders: str


def _endpoint(method: str, path: str, validate, execute, renders: str) -> Endpoint:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Endpoint(method, re.compile(f"^{regex}$"), validate, execute, renders)


ENDPOINTS = [
    _endpoint("POST", "/v1/payment_intents", payment_intents.validate_create, payment_intents.create, "payment_intent"),
    _endpoint("GET", "/v1/payment_intents/{id}", params.only_expand, payment_intents.retrieve, "payment_intent"),
    _endpoint("GET", "/v1/charges/{id}", params.only_expand, payment_intents.retrieve_charge, "charge"),
    _endpoint("POST", "/v1/transfers", transfers.validate_create, transfers.create, "transfer"),
    _endpoint("GET", "/v1/transfers/{id}", params.only_expand, transfers.retrieve, "transfer"),
    _endpoint(
        "POST",
        "/v1/transfers/{id}/reversals",
        transfers.validate_create_reversal,
        transfers.create_reversal,
        "transfer_reversal",
    ),
    _endpoint(
        "GET", "/v1/transfers/{id}/reversals", params.validate_list, transfers.list_reversals, "list:transfer_reversal"
    ),
    _endpoint(
        "GET",
        "/v1/transfers/{transfer}/reversals/{id}",
        params.only_expand,
        transfers.retrieve_reversal,
        "transfer_reversal",
    ),
    _endpoint("POST", "/v1/refunds", refunds.validate_create, refunds.create, "refund"),
    _endpoint("GET", "/v1/refunds", refunds.validate_list, refunds.list_refunds, "list:refund"),
    _endpoint("GET", "/v1/refunds/{id}", params.only_expand, refunds.retrieve, "refund"),
    _endpoint("GET", "/v1/accounts/{id}", params.only_expand, reads.retrieve_account, "account"),
    _endpoint("GET", "/v1/balance", params.only_expand, reads.retrieve_balance, "balance"),
    _endpoint(
        "GET",
        "/v1/balance_transactions/{id}",
        params.only_expand,
        reads.retrieve_balance_transaction,
        "balance_transaction",
    ),
    _endpoint("GET", "/v1/disputes/{id}", params.only_expand, reads.retrieve_dispute, "dispute"),
    _endpoint("GET", "/v1/events/{id}", params.only_expand, reads.retrieve_event, "event"),
    _endpoint("GET", "/v1/events", reads.validate_list_events, reads.list_events, "list:event"),
]


def route(method: str, path: str) -> tuple[Endpoint, dict] | None:
    for endpoint in ENDPOINTS:
        if endpoint.method != method:
            continue
        match = endpoint.pattern.match(path)
        if match:
            return endpoint, match.groupdict()
    return None

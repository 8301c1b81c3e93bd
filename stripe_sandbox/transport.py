"""`SandboxHTTPClient`: the stripe SDK's HTTP transport, answering from the sandbox instead of the network.

    stripe.StripeClient("sk_test_sandbox", http_client=SandboxHTTPClient(), max_network_retries=0)

The SDK encodes the request, and parses the (body, status, headers) returned here into objects or its
own error classes, exactly as with api.stripe.com. One call goes through, in order: simulated latency
(outside any transaction), routing, authentication, faults that strike before Stripe's idempotency
layer, the Stripe-Account header, the idempotency layer, then the endpoint in one transaction with the
stored response. Every call is recorded in SandboxRequest.
"""

import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import stripe
from django.conf import settings
from django.db import DatabaseError, transaction
from requests.structures import CaseInsensitiveDict

from . import expansion, faults, idempotency
from .encoding import decode_params, fingerprint
from .endpoints import Call, route
from .endpoints.params import expand as expand_param
from .errors import StripeFailure, api_error, key_in_use, rate_limited
from .ids import new_request_id
from .models import FaultKind, SandboxAccount, SandboxRequest

logger = logging.getLogger(__name__)

API_VERSION_HEADER = "2026-10-28.endive"
_CONNECTION_MESSAGE = (
    "Unexpected error communicating with Stripe.  If this problem persists,\n"
    "let us know at support@stripe.com.\n\n(Network error: {detail})"
)


class _NoResponse(Exception):
    """The client gets no HTTP response (connection reset, timeout, response lost in transit)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass
class _Outcome:
    status: int
    body: str
    replayed: bool = False
    stored: bool = True  # whether Stripe keeps this answer under the idempotency key


@dataclass
class _Log:
    method: str
    path: str
    account: str = ""
    idempotency_key: str = ""
    fault: str = ""
    stripe_version: str = ""


class SandboxHTTPClient(stripe.HTTPClient):
    name = "stripe_sandbox"

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        return handle(method, url, headers or {}, post_data)

    def request_stream(self, method, url, headers, post_data=None, *, _usage=None):
        raise NotImplementedError("The Stripe sandbox does not emulate streaming endpoints.")

    def close(self):
        pass


def handle(method: str, url: str, headers, post_data) -> tuple[bytes, int, CaseInsensitiveDict]:
    """Answer one SDK request like api.stripe.com would; raise APIConnectionError for a lost response."""
    latency_ms = getattr(settings, "STRIPE_SANDBOX_LATENCY_MS", 0)
    if latency_ms:
        time.sleep(latency_ms / 1000)

    headers = CaseInsensitiveDict(headers)
    method = method.upper()
    parts = urlsplit(url)
    path = unquote(parts.path)
    request_id = new_request_id()
    log = _Log(
        method=method,
        path=path,
        account=headers.get("Stripe-Account", ""),
        idempotency_key=headers.get("Idempotency-Key", "") if method == "POST" else "",
        stripe_version=headers.get("Stripe-Version", ""),
    )
    try:
        outcome = _dispatch(method, path, parts.query, post_data, headers, request_id, log)
    except DatabaseError:
        # The emulated Stripe lost its own storage mid-request (e.g. the shared connection was
        # killed): like a crashed server, the client gets no response and must retry the same key.
        logger.exception("Stripe sandbox lost its database on %s %s", method, path)
        raise stripe.APIConnectionError(
            _CONNECTION_MESSAGE.format(detail="RemoteDisconnected: the sandbox's database failed"),
            should_retry=True,
        ) from None
    except _NoResponse as lost:
        _record(log, request_id, status=0)
        raise stripe.APIConnectionError(_CONNECTION_MESSAGE.format(detail=lost.detail), should_retry=True) from None

    _record(log, request_id, status=outcome.status, replayed=outcome.replayed)
    response_headers = CaseInsensitiveDict(
        {
            "Content-Type": "application/json",
            "Request-Id": request_id,
            "Stripe-Version": headers.get("Stripe-Version", API_VERSION_HEADER),
        }
    )
    if log.idempotency_key:
        response_headers["Idempotency-Key"] = log.idempotency_key
    if outcome.replayed:
        response_headers["Idempotent-Replayed"] = "true"
    return outcome.body.encode(), outcome.status, response_headers


def _dispatch(method, path, query, post_data, headers, request_id, log: _Log) -> _Outcome:
    def failure(exc: StripeFailure) -> _Outcome:
        return _Outcome(exc.status, _json(exc.body(request_id)))

    auth = _authentication_failure(headers.get("Authorization", ""))
    if auth is not None:
        return failure(auth)
    routed = route(method, path)
    if routed is None:
        return failure(
            StripeFailure(
                404,
                "invalid_request_error",
                f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
                "help at https://support.stripe.com/.",
            )
        )
    endpoint, path_args = routed

    early = faults.take(faults.BEFORE_IDEMPOTENCY, method=method, path=path)
    if early is not None:
        log.fault = early.kind
        if early.kind == FaultKind.CONNECTION_ERROR:
            raise _NoResponse("ConnectionError: ('Connection aborted.', ConnectionResetError(104))")
        if early.kind == FaultKind.TIMEOUT:
            raise _NoResponse("Timeout: HTTPSConnectionPool(host='api.stripe.com'): Read timed out.")
        if early.kind == FaultKind.HTTP_429:
            return failure(rate_limited())
        if early.kind == FaultKind.HTTP_409:
            return failure(key_in_use(log.idempotency_key or "(none)"))
        return failure(api_error(503))

    account = None
    if log.account:
        account = SandboxAccount.objects.filter(stripe_id=log.account, is_platform=False).first()
        if account is None:
            return failure(
                StripeFailure(
                    403,
                    "invalid_request_error",
                    f"The provided key does not have access to account '{log.account}' (or that account "
                    "does not exist). Application access may have been revoked.",
                    code="account_invalid",
                )
            )

    try:
        params = decode_params(post_data if method == "POST" else query)
    except StripeFailure as exc:
        return failure(exc)
    call = Call(
        method=method,
        path=path,
        path_args=path_args,
        account=account,
        request_id=request_id,
        idempotency_key=log.idempotency_key or None,
    )

    scope, key = log.account, log.idempotency_key
    request_fingerprint = fingerprint(method, path, params)
    key_row = None
    try:
        if key and (replay := _replay(scope, key, request_fingerprint)) is not None:
            return replay
        cleaned = endpoint.validate(params)  # a failure here stores nothing under the key
        expand_paths = expand_param(params)
        expansion.check(expand_paths, endpoint.renders)
        if key:
            key_row = idempotency.claim(scope, key, method=method, path=path, fingerprint=request_fingerprint)
            if key_row is None:  # a concurrent request with the same key claimed it first
                replay = _replay(scope, key, request_fingerprint)
                if replay is None:
                    raise key_in_use(key)
                return replay
    except StripeFailure as exc:
        return failure(exc)

    return _execute(endpoint, call, cleaned, expand_paths, key_row, request_id, log)


def _replay(scope: str, key: str, request_fingerprint: str) -> _Outcome | None:
    """The stored response for a used key (raises 400/409 as Stripe does), None for an unused key."""
    row = idempotency.existing(scope, key)
    if row is None:
        return None
    stored = idempotency.verdict(row, request_fingerprint)
    return _Outcome(stored.status, stored.body, replayed=True)


def _execute(
    endpoint, call: Call, cleaned: dict, expand_paths: list[str], key_row, request_id: str, log: _Log
) -> _Outcome:
    """Run the endpoint; its effect and the stored response (expanded as asked) commit together."""
    stall = faults.take([FaultKind.STALL], method=call.method, path=call.path)
    if stall is not None:
        log.fault = stall.kind
        time.sleep(stall.stall_seconds)  # the key stays "executing" meanwhile, outside any transaction
    lose_response = False
    try:
        with transaction.atomic():
            crash = faults.take([FaultKind.HTTP_500, FaultKind.RESPONSE_LOST], method=call.method, path=call.path)
            if crash is not None:
                log.fault = crash.kind
            if crash is not None and crash.kind == FaultKind.HTTP_500:
                outcome = _Outcome(500, _json(api_error(500).body(request_id)))
            else:
                lose_response = crash is not None
                try:
                    body = expansion.expand(endpoint.execute(call, cleaned), expand_paths)
                    outcome = _Outcome(200, _json(body))
                except StripeFailure as exc:
                    outcome = _Outcome(exc.status, _json(exc.body(request_id)), stored=exc.stored)
                if call.taken_faults:
                    log.fault = call.taken_faults[-1]
            if key_row is not None and outcome.stored:
                idempotency.store(key_row, outcome.status, outcome.body)
            elif key_row is not None:
                idempotency.release(key_row)
    except Exception:
        # A bug or a database error: Stripe answers 500 and keeps that answer under the key.
        logger.exception("Stripe sandbox failed on %s %s", call.method, call.path)
        outcome = _Outcome(500, _json(api_error(500).body(request_id)))
        if key_row is not None:
            idempotency.store(key_row, outcome.status, outcome.body)
        return outcome
    if lose_response:
        raise _NoResponse(
            "ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed "
            "connection without response'))"
        )
    return outcome


def _authentication_failure(authorization: str) -> StripeFailure | None:
    api_key = authorization.removeprefix("Bearer ").strip()
    if api_key.startswith(("sk_test_", "rk_test_")):
        return None
    shown = f"{api_key[:8]}{'*' * 4}{api_key[-4:]}" if len(api_key) > 12 else "(redacted)"
    message = "You did not provide an API key." if not api_key else f"Invalid API Key provided: {shown}"
    return StripeFailure(401, "invalid_request_error", message, stored=False)


def _record(log: _Log, request_id: str, *, status: int, replayed: bool = False) -> None:
    SandboxRequest.objects.create(
        method=log.method,
        path=log.path[:255],
        account=log.account[:64],
        idempotency_key=log.idempotency_key[:255],
        stripe_version=log.stripe_version[:40],
        status_code=status,
        fault=log.fault,
        replayed=replayed,
        request_id=request_id,
    )


def _json(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"))


def sandbox_stripe_client(
    api_key: str = "sk_test_sandbox", *, stripe_version: str | None = None
) -> stripe.StripeClient:
    """A real StripeClient whose wire is the sandbox; no SDK retries (callers retry with stable keys).
    `stripe_version`: the Stripe-Version every request carries (the SDK's own when None)."""
    return stripe.StripeClient(
        api_key, http_client=SandboxHTTPClient(), max_network_retries=0, stripe_version=stripe_version
    )

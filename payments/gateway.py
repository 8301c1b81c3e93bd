"""StripeGateway: the only code in the product that talks to Stripe.

One method per Stripe call, each returning a frozen dataclass, never an SDK object. Mutating calls
require an idempotency key, which callers derive from their own ids so a retry (a Celery retry, a
redelivered message, a second webhook) sends the same key and Stripe moves money once.

Currencies: our code uses upper-case ISO codes (USD), Stripe lower-case (usd); the conversion
happens here, both ways. Statuses keep Stripe's values ("succeeded", "pending", "failed").

Errors: every stripe-python error becomes one of three classes (docs/reliability.md), keeping
Stripe's code and message:
- TransientGatewayError: connection errors, timeouts, 429, 5xx, 409 (idempotency_key_in_use). The
  outcome is unknown or not reached: retry with the SAME key. A stored 500 replays under that key,
  so after bounded retries look the object up before trying a new key.
- PermanentGatewayError: invalid request (balance_insufficient, charge_already_refunded,
  amount_too_large, ...), card, authentication, permission. Retrying cannot help.
- IdempotencyConflictError (a TransientGatewayError, HTTP 400 `idempotency_error`): the key was first
  used with other parameters. Stripe executed nothing for this request, but the key's first use may
  have made an object, so the outcome of the step is unknown, never the shopper's failure: the engine
  looks the step up by metadata before anything is sent again, and resends only under the same key
  (which Stripe keeps refusing), so money cannot move twice. Logged as an error: with the
  per-deployment prefix below it means a bug (or two deployments sharing a prefix) and needs a human.

Keys and versions (issue #16, item 3):
- Every idempotency key is sent as "<STRIPE_IDEMPOTENCY_PREFIX>:<key>". Callers keep deriving and
  storing their own keys (`refund-12-shopper-refund`); the prefix is applied here only, so what we
  store stays ours, readable and independent of the deployment, and the look-ups (by metadata) do not
  depend on it.
- Every call carries the Stripe-Version header of settings.STRIPE_API_VERSION (a client option).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import stripe
from django.conf import settings

from violet_refunds import logs, metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaymentIntentResult:
    id: str
    charge_id: str
    amount: int
    currency: str
    status: str
    amount_refunded: int


@dataclass(frozen=True)
class TransferResult:
    id: str
    amount: int
    currency: str
    destination: str
    amount_reversed: int


@dataclass(frozen=True)
class ReversalResult:
    id: str
    transfer_id: str
    amount: int
    currency: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    id: str
    payment_intent_id: str
    amount: int
    currency: str
    status: str
    failure_reason: str
    metadata: dict = field(default_factory=dict)


class GatewayError(Exception):
    """A Stripe call that did not succeed. `code` and `message` are Stripe's own."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.error_type = error_type
        self.request_id = request_id

    def __repr__(self):
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"error_type={self.error_type!r}, message={self.message!r})"
        )


class TransientGatewayError(GatewayError):
    """Retry later with the same idempotency key."""

    # The convention violet_refunds.retrying reads: an inbound event whose processing met this error
    # is retried automatically.
    transient = True


class PermanentGatewayError(GatewayError):
    """Stripe refused the request; the same request will keep failing."""


class IdempotencyConflictError(TransientGatewayError):
    """The idempotency key was already used with different parameters (Stripe's 400 `idempotency_error`).

    Not executed, yet not a definitive answer about the step: the key's first use may hold an object.
    Transient so that the engine treats the outcome as unknown (look up, never FAILED on this alone)."""


def sent_idempotency_key(idempotency_key: str) -> str:
    """The key as Stripe sees it: ours, in this deployment's namespace."""
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise ValueError("A non-empty idempotency_key is required for every Stripe call that moves money.")
    sent = f"{settings.STRIPE_IDEMPOTENCY_PREFIX}:{idempotency_key}"
    if len(sent) > 255:
        raise ValueError(
            f"Stripe idempotency keys are at most 255 characters ({sent!r} with STRIPE_IDEMPOTENCY_PREFIX)."
        )
    return sent


def _require_key(idempotency_key: str) -> str:
    return sent_idempotency_key(idempotency_key)


def _require_amount(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"amount must be a positive integer in minor units, got {amount!r}.")
    return amount


def _to_stripe_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"currency must be a three-letter ISO code such as USD, got {currency!r}.")
    return currency.lower()


def _from_stripe_currency(currency: str | None) -> str:
    return (currency or "").upper()


def _field(obj, name: str, default=None):
    """A response field, or `default` when Stripe left it out."""
    return obj[name] if name in obj and obj[name] is not None else default


def _id_of(value) -> str:
    """An id whether the field is a plain id or an expanded object."""
    if value is None:
        return ""
    return value if isinstance(value, str) else value["id"]


def _metadata(obj) -> dict:
    value = _field(obj, "metadata")
    return value.to_dict() if value is not None else {}


def _translate(exc: stripe.StripeError) -> GatewayError:
    error = exc.error  # the parsed {"error": {...}} body, when there was one
    code = exc.code or (error.code if error is not None and "code" in error else None)
    error_type = error.type if error is not None and "type" in error else None
    status = exc.http_status
    message = exc.user_message or str(exc)
    request_id = exc.request_id

    def build(cls, kind=error_type):
        return cls(message, code=code, http_status=status, error_type=kind, request_id=request_id)

    if isinstance(exc, stripe.APIConnectionError):
        return build(TransientGatewayError, "api_connection_error")
    if isinstance(exc, stripe.IdempotencyError):
        return build(IdempotencyConflictError)
    if isinstance(exc, stripe.AuthenticationError):
        return build(PermanentGatewayError, "authentication_error")
    if isinstance(exc, stripe.PermissionError):
        return build(PermanentGatewayError, "permission_error")
    if isinstance(exc, stripe.RateLimitError) or status == 409 or code == "idempotency_key_in_use":
        return build(TransientGatewayError)
    if isinstance(exc, stripe.CardError | stripe.InvalidRequestError):
        return build(PermanentGatewayError)
    if status is None or status >= 500 or isinstance(exc, stripe.APIError):
        return build(TransientGatewayError)
    return build(PermanentGatewayError)


def _outcome_label(error: GatewayError) -> str:
    if isinstance(error, IdempotencyConflictError):
        return "idempotency_conflict"
    return "transient" if isinstance(error, TransientGatewayError) else "permanent"


class StripeGateway:
    def __init__(self, client: stripe.StripeClient):
        self._client = client

    def _call(self, method, *args, **kwargs):
        operation = metrics.stripe_operation(method)
        try:
            result = method(*args, **kwargs)
        except stripe.StripeError as exc:
            error = _translate(exc)
            metrics.STRIPE_CALLS.labels(operation=operation, outcome=_outcome_label(error)).inc()
            # Stripe's request id on the log lines that follow (the refund's outcome, the error).
            logs.bind(stripe_request_id=error.request_id)
            if isinstance(error, IdempotencyConflictError):
                sent_key = (kwargs.get("options") or {}).get("idempotency_key", "")
                logger.error(
                    "Stripe idempotency conflict: key %r was first used with other parameters (request %s: %s). "
                    "Stripe executed nothing; the step stays unknown and is looked up before anything is "
                    "sent again. A bug or two deployments sharing STRIPE_IDEMPOTENCY_PREFIX on one Stripe "
                    "account: investigate.",
                    sent_key,
                    error.request_id,
                    error.message,
                )
            raise error from exc
        metrics.STRIPE_CALLS.labels(operation=operation, outcome="ok").inc()
        last_response = getattr(result, "last_response", None)
        logs.bind(stripe_request_id=getattr(last_response, "request_id", None))
        return result

    # --- payment intents ---

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict | None = None,
        receipt_email: str | None = None,
    ) -> PaymentIntentResult:
        """Charge a card (the test card in the sandbox) and confirm at once."""
        params = {
            "amount": _require_amount(amount),
            "currency": _to_stripe_currency(currency),
            "confirm": True,
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "metadata": metadata or {},
            "expand": ["latest_charge"],
        }
        if receipt_email:
            params["receipt_email"] = receipt_email
        intent = self._call(
            self._client.v1.payment_intents.create,
            params=params,
            options={"idempotency_key": _require_key(idempotency_key)},
        )
        return _payment_intent_result(intent)

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentResult:
        intent = self._call(
            self._client.v1.payment_intents.retrieve,
            payment_intent_id,
            params={"expand": ["latest_charge"]},
        )
        return _payment_intent_result(intent)

    # --- transfers and reversals ---

    def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        idempotency_key: str,
        source_transaction: str | None = None,
        transfer_group: str | None = None,
        metadata: dict | None = None,
    ) -> TransferResult:
        params = {
            "amount": _require_amount(amount),
            "currency": _to_stripe_currency(currency),
            "destination": destination,
            "metadata": metadata or {},
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        if transfer_group:
            params["transfer_group"] = transfer_group
        transfer = self._call(
            self._client.v1.transfers.create,
            params=params,
            options={"idempotency_key": _require_key(idempotency_key)},
        )
        return _transfer_result(transfer)

    def retrieve_transfer(self, transfer_id: str) -> TransferResult:
        return _transfer_result(self._call(self._client.v1.transfers.retrieve, transfer_id))

    def reverse_transfer(
        self,
        *,
        transfer_id: str,
        amount: int,
        idempotency_key: str,
        metadata: dict | None = None,
    ) -> ReversalResult:
        reversal = self._call(
            self._client.v1.transfers.reversals.create,
            transfer_id,
            params={"amount": _require_amount(amount), "metadata": metadata or {}},
            options={"idempotency_key": _require_key(idempotency_key)},
        )
        return _reversal_result(reversal)

    def list_transfer_reversals(self, transfer_id: str) -> list[ReversalResult]:
        """Every reversal of the transfer (all pages), newest first as Stripe lists them."""
        page = self._call(self._client.v1.transfers.reversals.list, transfer_id, params={"limit": 100})
        return [_reversal_result(item) for item in self._call(lambda: list(page.auto_paging_iter()))]

    # --- refunds ---

    def refund_payment(
        self,
        *,
        payment_intent_id: str,
        amount: int,
        idempotency_key: str,
        metadata: dict | None = None,
    ) -> RefundResult:
        refund = self._call(
            self._client.v1.refunds.create,
            params={
                "payment_intent": payment_intent_id,
                "amount": _require_amount(amount),
                "metadata": metadata or {},
            },
            options={"idempotency_key": _require_key(idempotency_key)},
        )
        return _refund_result(refund)

    def retrieve_refund(self, refund_id: str) -> RefundResult:
        return _refund_result(self._call(self._client.v1.refunds.retrieve, refund_id))

    def list_refunds(self, *, payment_intent_id: str) -> list[RefundResult]:
        """Every refund of the payment intent (all pages), newest first as Stripe lists them."""
        page = self._call(self._client.v1.refunds.list, params={"payment_intent": payment_intent_id, "limit": 100})
        return [_refund_result(item) for item in self._call(lambda: list(page.auto_paging_iter()))]


def _payment_intent_result(intent) -> PaymentIntentResult:
    charge = _field(intent, "latest_charge")
    amount_refunded = 0
    if charge is not None and not isinstance(charge, str):
        amount_refunded = _field(charge, "amount_refunded", 0)
    return PaymentIntentResult(
        id=intent["id"],
        charge_id=_id_of(charge),
        amount=intent["amount"],
        currency=_from_stripe_currency(intent["currency"]),
        status=intent["status"],
        amount_refunded=amount_refunded,
    )


def _transfer_result(transfer) -> TransferResult:
    return TransferResult(
        id=transfer["id"],
        amount=transfer["amount"],
        currency=_from_stripe_currency(transfer["currency"]),
        destination=_id_of(_field(transfer, "destination")),
        amount_reversed=_field(transfer, "amount_reversed", 0),
    )


def _reversal_result(reversal) -> ReversalResult:
    return ReversalResult(
        id=reversal["id"],
        transfer_id=_id_of(_field(reversal, "transfer")),
        amount=reversal["amount"],
        currency=_from_stripe_currency(reversal["currency"]),
        metadata=_metadata(reversal),
    )


def _refund_result(refund) -> RefundResult:
    return RefundResult(
        id=refund["id"],
        payment_intent_id=_id_of(_field(refund, "payment_intent")),
        amount=refund["amount"],
        currency=_from_stripe_currency(refund["currency"]),
        status=_field(refund, "status", ""),
        failure_reason=_field(refund, "failure_reason", ""),
        metadata=_metadata(refund),
    )


_gateways: dict[tuple[int, str, str, str], StripeGateway] = {}
# The key the SDK sends to the out-of-process sandbox, which accepts any test-mode key.
SANDBOX_API_KEY = "sk_test_sandbox"
_gateways_lock = threading.Lock()


def _new_client(api_key: str, api_version: str) -> stripe.StripeClient:
    # No SDK retries: its automatic idempotency keys would live for one call only; the refund
    # engine retries with its own stable keys instead. The API version is pinned by our settings,
    # sent as Stripe-Version on every call.
    if api_key:
        return stripe.StripeClient(api_key, stripe_version=api_version, max_network_retries=0)
    if settings.STRIPE_SANDBOX_URL:
        # The sandbox in its own process (stripe_sandbox.http_server), over real HTTP: the bench's way
        # to keep the emulator's CPU apart from ours. Only ever without a real key (settings refuse both).
        return stripe.StripeClient(
            SANDBOX_API_KEY,
            stripe_version=api_version,
            max_network_retries=0,
            base_addresses={"api": settings.STRIPE_SANDBOX_URL},
        )
    from stripe_sandbox.transport import sandbox_stripe_client

    return sandbox_stripe_client(stripe_version=api_version)


def get_gateway() -> StripeGateway:
    """Real Stripe when settings.STRIPE_API_KEY is set, else the sandbox. One per process, key and API
    version (a forked Celery child builds its own, never sharing the parent's HTTP connections)."""
    api_key = settings.STRIPE_API_KEY or ""
    api_version = settings.STRIPE_API_VERSION
    cache_key = (os.getpid(), api_key, api_version, settings.STRIPE_SANDBOX_URL)
    gateway = _gateways.get(cache_key)
    if gateway is None:
        with _gateways_lock:
            gateway = _gateways.get(cache_key)
            if gateway is None:
                gateway = StripeGateway(_new_client(api_key, api_version))
                _gateways[cache_key] = gateway
    return gateway

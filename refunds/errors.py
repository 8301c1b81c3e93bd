"""Stable numeric codes for RefundError.error_code (the API's errors[].error_code is an integer).

Each Stripe failure the engine can meet maps to one code, so channels and operators can act on the
code instead of parsing messages.
"""

from enum import IntEnum


class RefundErrorCode(IntEnum):
    GATEWAY_REJECTED = 3000  # any other permanent Stripe error
    CHARGE_ALREADY_REFUNDED = 3001
    BALANCE_INSUFFICIENT = 3002
    AMOUNT_TOO_LARGE = 3003
    IDEMPOTENCY_CONFLICT = 3004
    RETRIES_EXHAUSTED = 3005
    SHOPPER_REFUND_FAILED = 3006
    CHARGE_DISPUTED = 3007
    GATEWAY_AUTHENTICATION = 3008
    MISSING_PAYMENT = 3009
    CURRENCY_MISMATCH = 3010
    INCONSISTENT_AMOUNTS = 3011  # the bag's transfers/refunds cannot be split (data needs an operator)
    PLATFORM_REFUSED = 3100  # the merchant's platform refused the forwarded refund: nothing moved
    # A platform refund asked more than was left (part refunded through another source): what was left
    # was recorded; an operator note, not a failure.
    PLATFORM_AMOUNT_ADJUSTED = 3101


_BY_STRIPE_CODE = {
    "charge_already_refunded": RefundErrorCode.CHARGE_ALREADY_REFUNDED,
    "balance_insufficient": RefundErrorCode.BALANCE_INSUFFICIENT,
    "insufficient_funds": RefundErrorCode.BALANCE_INSUFFICIENT,
    "amount_too_large": RefundErrorCode.AMOUNT_TOO_LARGE,
    "charge_disputed": RefundErrorCode.CHARGE_DISPUTED,
    "idempotency_error": RefundErrorCode.IDEMPOTENCY_CONFLICT,
}


def code_for_gateway_error(stripe_code: str | None, error_type: str | None = None) -> RefundErrorCode:
    if stripe_code and stripe_code in _BY_STRIPE_CODE:
        return _BY_STRIPE_CODE[stripe_code]
    if error_type == "idempotency_error":
        return RefundErrorCode.IDEMPOTENCY_CONFLICT
    if error_type in {"authentication_error", "permission_error"}:
        return RefundErrorCode.GATEWAY_AUTHENTICATION
    return RefundErrorCode.GATEWAY_REJECTED

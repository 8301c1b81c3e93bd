"""The fault switchboard: failures a test injected, stored in the database so a worker process sees them.

A fault matches a call by method ('' = any) and by `path_pattern`, a glob over the whole URL path
('' = any): '/v1/refunds' is refund creation and listing, '/v1/refunds*' also a retrieve,
'/v1/transfers/*/reversals' every reversal.

Each fault affects exactly `times` matching calls: a call takes one unit with a conditional UPDATE
(`remaining > 0`), which the database serializes, so concurrent callers never share a unit.
"""

from fnmatch import fnmatchcase

from django.db.models import F

from .models import FaultKind, RefundFailureReason, SandboxFault

# Fail before Stripe's idempotency layer: nothing runs, nothing is stored under the key.
BEFORE_IDEMPOTENCY = (
    FaultKind.CONNECTION_ERROR,
    FaultKind.TIMEOUT,
    FaultKind.HTTP_429,
    FaultKind.HTTP_409,
    FaultKind.HTTP_503,
)
# Taken when the endpoint starts executing (not on a replay of a stored response).
DURING_EXECUTION = (FaultKind.STALL, FaultKind.HTTP_500, FaultKind.RESPONSE_LOST)
# Taken by the endpoint they concern, at the point where the real condition would be detected.
BUSINESS = (
    FaultKind.BALANCE_INSUFFICIENT,
    FaultKind.CHARGE_ALREADY_REFUNDED,
    FaultKind.CHARGE_DISPUTED,
    FaultKind.REFUND_FAILS_ASYNC,
    FaultKind.REFUND_PENDING,
    FaultKind.REFUND_PENDING_FAILS,
    FaultKind.REFUND_PENDING_CANCELED,
    FaultKind.REFUND_FAILS_LATER,
)


def take(kinds, *, method: str, path: str) -> SandboxFault | None:
    """Consume one unit of the oldest fault of one of `kinds` that matches this call, if any."""
    candidates = SandboxFault.objects.filter(kind__in=list(kinds), remaining__gt=0).order_by("pk")
    for fault in candidates:
        if fault.method and fault.method.upper() != method.upper():
            continue
        if fault.path_pattern and not fnmatchcase(path, fault.path_pattern):
            continue
        taken = SandboxFault.objects.filter(pk=fault.pk, remaining__gt=0).update(remaining=F("remaining") - 1)
        if taken:
            return fault
    return None


def inject(
    kind: str,
    *,
    times: int = 1,
    path: str | None = None,
    method: str | None = None,
    stall_seconds: float = 1.0,
    settle_after_seconds: float = 0.0,
    failure_reason: str = "",
) -> SandboxFault:
    if kind not in FaultKind.values:
        raise ValueError(f"Unknown fault kind {kind!r}; use one of {', '.join(FaultKind.values)}.")
    if times < 1:
        raise ValueError("times must be at least 1.")
    if path and not path.startswith(("/", "*")):
        raise ValueError(f"path is a glob over the URL path, such as '/v1/transfers/*/reversals'; got {path!r}.")
    if failure_reason and failure_reason not in RefundFailureReason.values:
        raise ValueError(
            f"Unknown failure_reason {failure_reason!r}; use one of {', '.join(RefundFailureReason.values)}."
        )
    if settle_after_seconds < 0:
        raise ValueError("settle_after_seconds cannot be negative.")
    return SandboxFault.objects.create(
        settle_after_seconds=settle_after_seconds,
        failure_reason=failure_reason,
        kind=kind,
        remaining=times,
        path_pattern=path or "",
        method=(method or "").upper(),
        stall_seconds=stall_seconds,
    )

"""The refund's audit trail: every change the services make is written as a RefundEvent."""

from __future__ import annotations

from typing import Any

from refunds.models import Refund, RefundEvent

# The actor name of the processing engine (the `process_refund` task).
WORKER = "worker"


def event_record(
    refund: Refund,
    kind: str,
    *,
    actor: str,
    user: Any = None,
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    data: dict | None = None,
) -> RefundEvent:
    return RefundEvent.objects.create(
        refund=refund,
        kind=kind,
        actor=actor,
        user=user,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )


def operator_actor(user: Any) -> str:
    return f"operator:{user.get_username()}" if user is not None else "system"

"""Forwarding channel refunds to the merchant's platform (issue 14): the one rule "forward, or tell
the merchant", and the send itself.

`forwarding_decide` reads the platform adapter's `capabilities` and the store connection (no HTTP):
a refund is forwarded when the platform can record it (a partial one only where the platform takes
partial refunds) and the connection holds the credentials to write; otherwise the merchant is told
to mirror it by hand and the money moves at once. A merchant without a connected store, or whose
connection lacks write credentials, is in the second group: the network never blocks a shopper's
money on a platform it cannot reach by design.

`refund_forward` (the `forward_refund` task) sends one attempt, under the "forwarding" advisory
lock, and hands the outcome to refunds.services.forwarding:
- accepted (or found there already, by our marker) -> the money moves;
- the platform says no (a 4xx other than 401/403: already refunded, archived order, bad quantities)
  -> the refund ends FAILED with the platform's message, nothing moved;
- unreachable (timeout, 5xx, 429) or an answer we cannot read -> retried with backoff; since the
  request may have been done, the next attempt first searches the order's refunds for our marker;
- our credentials refused (401/403), or an address we may not call -> straight to the operator
  (retrying cannot help): retry forwarding, or move the money without the platform.
The platforms app registers these as refunds' forwarding hooks at ready time (refunds never
imports platforms).
"""

from __future__ import annotations

import logging
from typing import cast

from platforms import tasks
from platforms.adapters import get_adapter
from platforms.adapters.base import NO_WRITES, ForwardLine, ForwardRequest, RefundWriter
from platforms.clients.base import (
    ConnectionMisconfigured,
    PlatformAuthenticationFailed,
    PlatformClientError,
    PlatformRequestRejected,
)
from platforms.models import Merchant, StoreConnection
from refunds.models import Bag, Refund
from refunds.services.forwarding import (
    ForwardingDecision,
    ForwardingHooks,
    forwarding_hooks_register,
    forwarding_marker,
    refund_forwarding_accept,
    refund_forwarding_claim,
    refund_forwarding_not_forwarded,
    refund_forwarding_refuse,
    refund_forwarding_retry_later,
    refund_forwarding_sending,
)
from violet_refunds.locks import try_exclusive

logger = logging.getLogger(__name__)

# Platform answers that are a refusal of this refund (retrying the same request cannot help, and the
# channel should hear it): anything 4xx but 401/403 (our credentials) and 429 (retried).
_AUTH_STATUSES = frozenset({401, 403})


def usable_connection(merchant: Merchant, needed: tuple[str, ...]) -> tuple[StoreConnection | None, str]:
    connection = StoreConnection.objects.filter(merchant=merchant).first()
    if connection is None or connection.status != StoreConnection.Status.CONNECTED:
        return None, "the merchant's store is not connected"
    stored = connection.credentials or {}
    missing = [name for name in needed if not str(stored.get(name) or "").strip()]
    if missing:
        return None, f"the store connection has no {', '.join(missing)} to write with"
    return connection, ""


def forwarding_decide(bag: Bag, *, full: bool) -> ForwardingDecision:
    """Forward, or tell the merchant (and why). Capabilities and stored credentials only: no HTTP."""
    merchant = Merchant.objects.get(pk=bag.merchant_id)
    platform = merchant.platform
    adapter = get_adapter(platform)
    capabilities = adapter.capabilities if adapter is not None else NO_WRITES
    if not capabilities.can_refund:
        return ForwardingDecision(forward=False, platform=platform, reason=f"{platform} has no API to record a refund")
    if not full and not capabilities.partial:
        return ForwardingDecision(
            forward=False, platform=platform, reason=f"{platform} records only refunds of a whole order"
        )
    not_this_order = bag_write_unavailable(adapter, bag)
    if not_this_order:
        return ForwardingDecision(forward=False, platform=platform, reason=not_this_order)
    connection, problem = usable_connection(merchant, capabilities.write_credentials)
    if connection is None:
        return ForwardingDecision(forward=False, platform=platform, reason=problem)
    return ForwardingDecision(forward=True, platform=platform)


def bag_write_unavailable(adapter, bag: Bag) -> str:
    """Why this order cannot take a refund on a platform that otherwise can ("" if it can): an
    adapter's optional `refund_write_unavailable(bag)` (Wix: orders placed before 2024-04-22)."""
    check = getattr(adapter, "refund_write_unavailable", None)
    return check(bag) if check is not None else ""


def forwarding_enqueue(refund_id: int, countdown: float | None = None) -> None:
    if countdown:
        tasks.forward_refund.apply_async((refund_id,), countdown=countdown)
    else:
        tasks.forward_refund.apply_async((refund_id,))


def forwarding_hooks_install() -> None:
    forwarding_hooks_register(ForwardingHooks(decide=forwarding_decide, enqueue=forwarding_enqueue))


def forward_request(refund: Refund) -> ForwardRequest:
    """The refund in the terms every platform writer takes."""
    marker = forwarding_marker(refund.pk)
    reason = (refund.reason or "").strip()
    lines = []
    for line in refund.skus.select_related("order_sku"):
        amount = line.amount_refunded
        if amount is None:
            amount = line.order_sku.price * line.quantity_refunded
        lines.append(ForwardLine(line.external_id or line.order_sku.external_id, line.quantity_refunded, amount))
    remaining_after = refund.bag.total - refund.amount
    return ForwardRequest(
        refund_id=refund.pk,
        order_id=str(refund.bag.external_id or ""),
        currency=refund.refund_currency,
        amount=refund.amount,
        sub_total=refund.sub_total_amount,
        shipping=refund.shipping_amount,
        tax=refund.tax_amount,
        lines=tuple(line for line in lines if line.line_item_external_id),
        restock=refund.restock_items,
        notify=refund.notify_customer,
        note=f"{marker} {reason}".strip()[:255],
        marker=marker,
        full=remaining_after <= 0,
    )


def refund_forward(*, refund_id: int) -> float | None:
    """One send of a channel refund to its platform. Seconds until the next send when it must be
    retried (the task schedules it after this returns, the lock released), else None."""
    with try_exclusive("forwarding", refund_id) as acquired:
        if not acquired:
            return None  # another worker is sending it
        return _forward_locked(refund_id)


def _forward_locked(refund_id: int) -> float | None:
    claim = refund_forwarding_claim(refund_id=refund_id)
    if claim is None:
        return None
    refund = claim.refund
    merchant = refund.bag.merchant
    actor = f"platform:{merchant.platform.lower()}"
    adapter = get_adapter(merchant.platform)
    capabilities = adapter.capabilities if adapter is not None else NO_WRITES
    connection, problem = usable_connection(merchant, capabilities.write_credentials)
    not_this_order = bag_write_unavailable(adapter, refund.bag) if adapter is not None else ""
    if (
        adapter is None
        or not capabilities.can_refund
        or not_this_order
        or connection is None
        or not refund.bag.external_id
    ):
        refund_forwarding_not_forwarded(
            refund_id=refund_id,
            reason=not_this_order or problem or "the bag has no platform order, or the platform takes no refunds",
            actor=actor,
        )
        return None
    writer = cast(RefundWriter, adapter)
    request = forward_request(refund)
    try:
        platform_refund_id = writer.refund_find(connection, request) if claim.look_up_first else None
        found = platform_refund_id is not None
        if platform_refund_id is None:
            platform_refund_id = writer.refund_create(
                connection, request, before_send=lambda: refund_forwarding_sending(refund_id=refund_id)
            )
    except ConnectionMisconfigured as exc:
        refund_forwarding_not_forwarded(refund_id=refund_id, reason=exc.message, actor=actor)
        return None
    except PlatformRequestRejected as exc:
        if (
            exc.http_status is None
            or exc.http_status in _AUTH_STATUSES
            or isinstance(exc, PlatformAuthenticationFailed)
        ):
            return refund_forwarding_retry_later(refund_id=refund_id, error=exc.message, actor=actor, retryable=False)
        refund_forwarding_refuse(refund_id=refund_id, message=exc.message, actor=actor)
        return None
    except PlatformClientError as exc:  # unreachable, or an answer we cannot read: it may have been done
        return refund_forwarding_retry_later(refund_id=refund_id, error=exc.message, actor=actor)
    except Exception as exc:  # a bug or bad data: the send may have happened, so look it up next time
        logger.exception("Forwarding refund %s failed unexpectedly", refund_id)
        return refund_forwarding_retry_later(refund_id=refund_id, error=f"{type(exc).__name__}: {exc}", actor=actor)
    refund_forwarding_accept(
        refund_id=refund_id,
        platform_refund_id=platform_refund_id,
        actor=actor,
        message=(
            f"Found on {merchant.platform} as refund {platform_refund_id} (an earlier send reached it); "
            "moving the money."
            if found
            else f"Recorded on {merchant.platform} as refund {platform_refund_id}; moving the money."
        ),
    )
    return None

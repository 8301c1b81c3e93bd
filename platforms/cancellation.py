"""A channel's cancellation of a bag (issue 14; Violet's `POST /orders/{id}/cancel` and
`/orders/{id}/bags/{id}/cancel`, spec 2.3): cancelled at the merchant's platform first, then a full
refund of the bag, which is forwarded like any channel refund (platforms.forwarding).

- Eligible bags: ACCEPTED, SUBMITTED, COMPLETED, PARTIALLY_REFUNDED (spec 2.3); any other is a
  CANCELLATION_FAILURE naming its status, and nothing happens.
- Where the platform can cancel (adapter `capabilities.can_cancel` and write credentials), it is
  asked synchronously (the answer is the channel's): a refusal (e.g. fulfilled) or an unreachable
  platform is a CANCELLATION_FAILURE with the platform's message, and nothing was cancelled or
  refunded. Where it cannot (Ecwid, Wix, SFCC, no credentials), the network cancels and refunds, and
  the merchant is told through the refund's "mirror this refund" task.
- Then the bag becomes CANCELED (outbound ORDER_CANCELLED, as a platform cancellation does) and
  everything still refundable is refunded: a channel refund, recorded under the Idempotency-Key
  prefixed `cancel:`, so a repeated request answers the same cancellation (same refund) and the same
  key with another body is refused (422), as on the refund endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from django.utils import timezone

from platforms.adapters import get_adapter
from platforms.adapters.base import NO_WRITES, CancelRequest, OrderCanceller
from platforms.clients.base import PlatformAuthenticationFailed, PlatformClientError, PlatformRequestRejected
from platforms.forwarding import usable_connection
from refunds.models import Bag, BagStatus, Refund, RefundSource
from refunds.services import bag_mark_canceled, refund_for_request, refund_record
from violet_refunds.exceptions import ValidationFailed

CANCELABLE_BAG_STATUSES = frozenset(
    {BagStatus.ACCEPTED, BagStatus.SUBMITTED, BagStatus.COMPLETED, BagStatus.PARTIALLY_REFUNDED}
)
CANCELED = "CANCELED"
CANCELLATION_FAILURE = "CANCELLATION_FAILURE"


@dataclass(frozen=True)
class CancelError:
    error_code: str
    message: str


@dataclass(frozen=True)
class BagCancellation:
    bag: Bag
    status: str  # CANCELED or CANCELLATION_FAILURE
    refund: Refund | None = None
    errors: tuple[CancelError, ...] = ()
    date_cancelled: datetime | None = None
    repeated: bool = False  # the same request (Idempotency-Key) was answered before


def bag_cancel(
    *,
    bag: Bag,
    actor: str,
    user=None,
    request_key: str | None = None,
    reason: str = "",
    reason_code: str = "OTHER",
    restock_items: bool = True,
    notify_customer: bool = False,
) -> BagCancellation:
    fields: dict = {
        "reason": reason or "",
        "reason_code": reason_code or "OTHER",
        "restock_items": restock_items,
        "notify_customer": notify_customer,
    }
    key = f"cancel:{request_key}" if request_key else None
    if key:
        # RequestMismatch (422) when the key cancelled with another body.
        existing = refund_for_request(bag=bag, source=RefundSource.CHANNEL_API, request_key=key, **fields)
        if existing is not None:
            return BagCancellation(
                bag=bag, status=CANCELED, refund=existing, date_cancelled=existing.date_created, repeated=True
            )
    if bag.status not in CANCELABLE_BAG_STATUSES:
        return _failure(
            bag,
            "bag_not_cancelable",
            f"Bag {bag.pk} is {bag.status}: only ACCEPTED, SUBMITTED, COMPLETED or PARTIALLY_REFUNDED bags "
            "can be cancelled.",
        )
    refused = _cancel_at_platform(bag, fields, request_key or "")
    if refused is not None:
        return refused
    bag_mark_canceled(bag=bag, actor=actor)
    try:
        result = refund_record(
            bag=bag,
            source=RefundSource.CHANNEL_API,
            actor=actor,
            user=user,
            request_key=key,
            reason=fields["reason"],
            reason_code=fields["reason_code"],
            restock_items=fields["restock_items"],
            notify_customer=fields["notify_customer"],
        )
    except ValidationFailed as exc:  # nothing left to refund: cancelled, no refund
        return BagCancellation(
            bag=bag,
            status=CANCELED,
            errors=(CancelError("nothing_to_refund", exc.message),),
            date_cancelled=timezone.now(),
        )
    return BagCancellation(bag=bag, status=CANCELED, refund=result.refund, date_cancelled=timezone.now())


def _failure(bag: Bag, code: str, message: str) -> BagCancellation:
    return BagCancellation(bag=bag, status=CANCELLATION_FAILURE, errors=(CancelError(code, message),))


def _cancel_at_platform(bag: Bag, fields: dict, request_key: str) -> BagCancellation | None:
    """Cancel the order on the merchant's platform where it can be; a failure, or None (go on)."""
    merchant = bag.merchant
    adapter = get_adapter(merchant.platform)
    capabilities = adapter.capabilities if adapter is not None else NO_WRITES
    if not capabilities.can_cancel or not bag.external_id:
        return None
    connection, _problem = usable_connection(merchant, capabilities.write_credentials)
    if connection is None:
        return None  # cannot write: the merchant is told through the refund's mirror task
    request = CancelRequest(
        order_id=str(bag.external_id),
        reason=fields["reason"],
        reason_code=fields["reason_code"],
        restock=fields["restock_items"],
        notify=fields["notify_customer"],
        note=f"[violet-cancel:{bag.pk}] {fields['reason']}".strip(),
    )
    try:
        cast(OrderCanceller, adapter).order_cancel(connection, request)
    except PlatformRequestRejected as exc:
        if exc.http_status is None or isinstance(exc, PlatformAuthenticationFailed):
            return _failure(bag, "platform_unavailable", f"{merchant.platform} could not be written to: {exc.message}")
        return _failure(bag, "platform_refused", exc.message)
    except PlatformClientError as exc:
        return _failure(
            bag,
            "platform_unavailable",
            f"{exc.message} Nothing was cancelled or refunded; send the request again.",
        )
    return None

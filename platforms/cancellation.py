"""A channel's cancellation of a bag (issue 14; Violet's `POST /orders/{id}/cancel` and
`/orders/{id}/bags/{id}/cancel`, spec 2.3): cancelled at the merchant's platform first, then a full
refund of the bag, which is forwarded like any channel refund (platforms.forwarding).

- Eligible bags: ACCEPTED, SUBMITTED, COMPLETED, PARTIALLY_REFUNDED (spec 2.3); any other is a
  CANCELLATION_FAILURE naming its status, and nothing happens (one exception: a CANCELED bag a cancel
  that settled later left with money refundable, below).
- Where the platform can cancel (adapter `capabilities.can_cancel` and write credentials), it is
  asked synchronously (the answer is the channel's): a refusal (e.g. fulfilled), our credentials
  refused, or an address we may not call is a CANCELLATION_FAILURE with the platform's message, and
  nothing was cancelled or refunded. Where it cannot (Ecwid, SFCC, Wix with WIX_CANCEL_WRITES off,
  no credentials), the network cancels and refunds, and the merchant is told through the refund's
  "mirror this refund" task.
- An unknown outcome is never a failure: when the cancel may have reached the platform (timeout,
  connection lost, 5xx/429 after the client's retries, an unreadable 2xx), the order is read back
  (adapter `order_cancelled`: Shopify `cancelled_at`, BigCommerce `status_id` 5, WooCommerce status
  `cancelled`, Wix status CANCELED). Cancelled there -> the cancellation goes on as if the answer had
  arrived. Shown not cancelled -> CANCELLATION_FAILURE (nothing happened at either end). The read
  fails too -> OUTCOME_UNKNOWN: nothing is recorded for that bag and the API answers 503
  `cancellation_outcome_unknown` with Retry-After (CANCELLATION_RETRY_AFTER_SECONDS); sending the
  same request again is safe (cancelling at the platform is idempotent; with the same
  Idempotency-Key, bags already cancelled answer as before). Should the platform have cancelled
  after all and the channel never come back, the platform's own cancellation webhook cancels and
  refunds the bag through the ordinary inbound path, so the two sides cannot stay apart.
- A platform that performs a cancel later (`capabilities.cancel_settles_later`: Shopify's
  `orderCancel` runs as a job) may show the order open right after a lost answer although the job
  will cancel it. Such a read is never final: the order is read up to CANCELLATION_READBACK_ATTEMPTS
  times, waiting CANCELLATION_READBACK_BACKOFF_SECONDS (doubling) in between; cancelled on any read
  -> the cancellation goes on; still open after the last -> OUTCOME_UNKNOWN (the 503 above), never
  CANCELLATION_FAILURE. When the job then runs, the platform's cancellation webhook marks the bag
  CANCELED before the channel's repeat arrives: a CANCELED bag of such a platform, whose store we
  can write cancels to, with money still refundable is therefore cancelled by that repeat without
  asking the platform again (it is cancelled there), and what is left is refunded, so the shopper is
  never stranded by our 503.
- Then the bag becomes CANCELED (outbound ORDER_CANCELLED, as a platform cancellation does) and
  everything still refundable is refunded: a channel refund, recorded under the Idempotency-Key
  prefixed `cancel:`, so a repeated request answers the same cancellation (same refund) and the same
  key with another body is refused (422), as on the refund endpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from django.conf import settings
from django.utils import timezone

from platforms.adapters import get_adapter
from platforms.adapters.base import NO_WRITES, CancelRequest, OrderCanceller
from platforms.clients.base import (
    ConnectionMisconfigured,
    PlatformAuthenticationFailed,
    PlatformClientError,
    PlatformRequestRejected,
)
from platforms.forwarding import usable_connection
from refunds.amounts import bag_refundable_remaining
from refunds.models import Bag, BagStatus, Refund, RefundSource
from refunds.services import bag_mark_canceled, refund_for_request, refund_record
from violet_refunds.exceptions import TemporarilyUnavailable, ValidationFailed

logger = logging.getLogger(__name__)

CANCELABLE_BAG_STATUSES = frozenset(
    {BagStatus.ACCEPTED, BagStatus.SUBMITTED, BagStatus.COMPLETED, BagStatus.PARTIALLY_REFUNDED}
)
CANCELED = "CANCELED"
CANCELLATION_FAILURE = "CANCELLATION_FAILURE"
# Not one of Violet's bag statuses: the API turns it into a 503 (refunds.api.views) and never shows it.
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


@dataclass(frozen=True)
class CancelError:
    error_code: str
    message: str


@dataclass(frozen=True)
class BagCancellation:
    bag: Bag
    status: str  # CANCELED, CANCELLATION_FAILURE or OUTCOME_UNKNOWN (nothing recorded, ask again)
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
    cancelled_there = _cancelled_there_later(bag)
    if bag.status not in CANCELABLE_BAG_STATUSES and not cancelled_there:
        return _failure(
            bag,
            "bag_not_cancelable",
            f"Bag {bag.pk} is {bag.status}: only ACCEPTED, SUBMITTED, COMPLETED or PARTIALLY_REFUNDED bags "
            "can be cancelled.",
        )
    if not cancelled_there:
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


def cancellations_outcome_check(results: list[BagCancellation]) -> list[BagCancellation]:
    """The answer a channel may be given: the results, or a 503 (Retry-After) when a bag's outcome
    is unknown. The 503 names the bags this request did cancel (recorded, refunded, announced), so
    a channel retrying without its Idempotency-Key is not surprised to find them CANCELED."""
    unknown = [result for result in results if result.status == OUTCOME_UNKNOWN]
    if not unknown:
        return results
    cancelled = [result.bag.pk for result in results if result.status == CANCELED and not result.repeated]
    message = " ".join(error.message for result in unknown for error in result.errors)
    if cancelled:
        message += f" Bags cancelled by this request: {', '.join(str(pk) for pk in cancelled)}."
    message += " Send the same request again (with the same Idempotency-Key): cancelling is idempotent."
    raise TemporarilyUnavailable(
        message,
        error_code="cancellation_outcome_unknown",
        retry_after=settings.CANCELLATION_RETRY_AFTER_SECONDS,
        extra={
            "outcome_unknown_bag_ids": [result.bag.pk for result in unknown],
            "cancelled_bag_ids": cancelled,
        },
    )


def _cancelled_there_later(bag: Bag) -> bool:
    """A bag the platform's own cancellation webhook marked CANCELED, on a platform we cancel through
    (write credentials held) and whose cancel settles later, with money still refundable: what a
    cancel answered 503 (its job still running) leaves behind when the job ran before the channel's
    repeat. The repeat refunds what is left. Where we never write cancels, a CANCELED bag stays
    ineligible as before."""
    if bag.status != BagStatus.CANCELED:
        return False
    merchant = bag.merchant
    adapter = get_adapter(merchant.platform)
    capabilities = adapter.capabilities if adapter is not None else NO_WRITES
    if not (capabilities.can_cancel and capabilities.cancel_settles_later):
        return False
    if usable_connection(merchant, capabilities.write_credentials)[0] is None:
        return False
    return bag_refundable_remaining(bag).total > 0


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
    canceller = cast(OrderCanceller, adapter)
    try:
        canceller.order_cancel(connection, request)
    except PlatformRequestRejected as exc:
        if exc.http_status is None or isinstance(exc, PlatformAuthenticationFailed):
            return _failure(bag, "platform_unavailable", f"{merchant.platform} could not be written to: {exc.message}")
        return _failure(bag, "platform_refused", exc.message)
    except ConnectionMisconfigured as exc:  # raised before anything was sent
        return _failure(bag, "platform_unavailable", f"{merchant.platform} could not be written to: {exc.message}")
    except PlatformClientError as exc:  # the cancel may have reached the platform: read the order back
        return _cancel_outcome_look_up(
            bag, canceller, connection, request.order_id, exc, settles_later=capabilities.cancel_settles_later
        )
    return None


def _readback_pause(read: int) -> None:
    """Before read number `read` + 1 of a cancel that settles later: the base, doubling, at most 5 s."""
    delay = min(float(settings.CANCELLATION_READBACK_BACKOFF_SECONDS) * (2 ** (read - 1)), 5.0)
    if delay > 0:
        time.sleep(delay)


def _outcome_unknown(bag: Bag, message: str) -> BagCancellation:
    return BagCancellation(
        bag=bag,
        status=OUTCOME_UNKNOWN,
        errors=(CancelError("cancellation_outcome_unknown", f"{message} Nothing was refunded for this bag."),),
    )


def _cancel_outcome_look_up(
    bag: Bag,
    canceller: OrderCanceller,
    connection,
    order_id: str,
    error: PlatformClientError,
    *,
    settles_later: bool = False,
) -> BagCancellation | None:
    """The cancel's answer was lost: None (it is cancelled there, go on), a failure (the platform
    shows it not cancelled), or OUTCOME_UNKNOWN (the order could not be read either, or, where the
    platform cancels later, it still showed open on every read)."""
    platform = bag.merchant.platform
    reads = max(1, int(settings.CANCELLATION_READBACK_ATTEMPTS)) if settles_later else 1
    read_error: PlatformClientError | None = None
    for read in range(1, reads + 1):
        if read > 1:
            _readback_pause(read - 1)
        try:
            cancelled = canceller.order_cancelled(connection, order_id)
        except PlatformClientError as exc:
            read_error = exc
            continue
        read_error = None
        if cancelled:
            logger.info(
                "bag %s: the lost cancel reached %s (order %s is cancelled there, read %s)",
                bag.pk,
                platform,
                order_id,
                read,
            )
            return None
    if read_error is not None:
        logger.warning("bag %s: cancel outcome unknown at %s (%s; read: %s)", bag.pk, platform, error, read_error)
        return _outcome_unknown(
            bag,
            f"{platform} did not confirm the cancellation of order {order_id} ({error.message}) and the "
            f"order could not be read back ({read_error.message}): it may or may not be cancelled there.",
        )
    if settles_later:
        logger.warning(
            "bag %s: %s still shows order %s open after %s reads (%s)", bag.pk, platform, order_id, reads, error
        )
        return _outcome_unknown(
            bag,
            f"{platform} did not confirm the cancellation of order {order_id} ({error.message}) and still shows "
            f"it open after {reads} reads; {platform} cancels as a background job, so it may still be cancelled.",
        )
    return _failure(
        bag,
        "platform_unavailable",
        f"{error.message} {platform} shows order {order_id} not cancelled: nothing was cancelled or refunded; "
        "send the request again.",
    )

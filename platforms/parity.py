"""The parity check: read each bag's order from its platform and record what no signal told us.

Webhooks get lost (a platform gives up retrying, a store's webhook is deleted, an endpoint was
down), polls miss orders (an SFCC order cancelled before its bag existed). Violet keeps
`date_last_consolidated` on each bag for this; so do we. Beat runs `bags_parity_check` every
PARITY_CHECK_INTERVAL_SECONDS:

- which bags: those created or changed in the last PARITY_CHECK_RECENT_SECONDS, once their last
  check is PARITY_CHECK_RECENT_EVERY_SECONDS old, then every other open bag (not REFUNDED, CANCELED
  or REJECTED) once per PARITY_CHECK_SLOW_ROUND_SECONDS; never checked first, then the longest
  unchecked; at most PARITY_CHECK_BATCH_SIZE per run. Only bags with a platform order id, of a
  CONNECTED store; never SFCC Option 2 (refunds come only from the merchant's notice there).
- how: the adapter's `read_order_state` (the platform's API through its client: Shopify order with
  refunds, Ecwid order, Wix order and its transactions, SFCC order, BigCommerce order and refunds,
  WooCommerce order and the details of refunds not yet recorded), then `services.order_reconcile`,
  the same path as a webhook: a refund already recorded is found by (bag, external id) and never
  recorded twice. Refunds the check records carry source PARITY_CHECK: the admin index counts them
  ("found by parity check"), so a missed webhook is visible. Platform refunds newer than
  PARITY_CHECK_GRACE_SECONDS are left to their webhook (a refund seconds old is not a missed one).
- how fast: PARITY_CHECK_CALLS_PER_MINUTE per platform (all its stores together), the calls spaced
  evenly, platforms taken in turn so a slow one never holds the others up; a run stops after
  PARITY_CHECK_MAX_RUN_SECONDS (the rest waits for the next run). A platform answering 429 (after
  the client's own retries, which honour Retry-After up to 10 s) is left alone for the rest of the run.
- afterwards `date_last_consolidated` is set, also when the platform has no such order or the store's
  credentials are wrong (logged; checking again on every run would not help). A transient error
  (timeout, 5xx, 429) leaves it unset: the bag is checked again on the next run.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from platforms import selectors
from platforms.adapters import get_adapter
from platforms.adapters.base import EventIgnored, OrderState, PlatformDataInvalid
from platforms.clients.base import PlatformClientError, PlatformNotFound, PlatformUnavailable
from platforms.privacy.disconnect import connection_auth_failure
from platforms.services import order_reconcile
from refunds.models import Bag, BagStatus, RefundSource

logger = logging.getLogger(__name__)

# API calls one `read_order_state` makes (SFCC: token + order; Wix: order + transactions;
# BigCommerce: order + refunds; WooCommerce: order, plus one per refund not recorded yet).
READ_CALLS = {"SHOPIFY": 1, "ECWID": 1, "WIX": 2, "SFCC": 2, "BIGCOMMERCE": 2, "WOOCOMMERCE": 1}


@dataclass
class ParityResult:
    bags_checked: int = 0
    refunds_found: int = 0
    cancellations_found: int = 0
    errors: list[str] = field(default_factory=list)
    left_for_next_run: int = 0


class Pacer:
    """Spaces calls to each platform evenly: `calls_per_minute` calls in any minute at most."""

    def __init__(
        self,
        calls_per_minute: Mapping[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.calls_per_minute = calls_per_minute
        self.clock = clock
        self.sleep = sleep
        self.next_allowed: dict[str, float] = {}

    def ready_at(self, platform: str) -> float:
        return self.next_allowed.get(platform, 0.0)

    def take(self, platform: str, calls: int) -> None:
        """Wait for the platform's turn, then book `calls` calls."""
        wait = self.ready_at(platform) - self.clock()
        if wait > 0:
            self.sleep(wait)
        rate = self.calls_per_minute.get(platform, 0)
        self.next_allowed[platform] = self.clock() + 60.0 * calls / max(rate, 1)


def bags_parity_check(*, now: datetime | None = None, pacer: Pacer | None = None) -> ParityResult:
    """Beat: check a batch of bags (see the module docstring); one bag's failure stops nothing."""
    now = now or timezone.now()
    rates = settings.PARITY_CHECK_CALLS_PER_MINUTE
    pacer = pacer or Pacer(rates)
    enabled = [platform for platform, rate in rates.items() if rate > 0]
    bags = selectors.bags_for_parity_check(
        platforms=enabled,
        recent_since=now - timedelta(seconds=settings.PARITY_CHECK_RECENT_SECONDS),
        recent_checked_before=now - timedelta(seconds=settings.PARITY_CHECK_RECENT_EVERY_SECONDS),
        slow_checked_before=now - timedelta(seconds=settings.PARITY_CHECK_SLOW_ROUND_SECONDS),
        limit=settings.PARITY_CHECK_BATCH_SIZE,
        # Issue #24: a store that went silent (or whose subscriptions broke) is read first.
        first_merchant_ids=list(
            selectors.connections_needing_attention(
                now=now,
                silent_after=timedelta(seconds=settings.STORE_SILENT_AFTER_SECONDS),
                min_bags=settings.STORE_SILENT_MIN_BAGS,
            ).values_list("merchant_id", flat=True)
        ),
    )
    queues: dict[str, deque[Bag]] = {}
    for bag in bags:
        queues.setdefault(bag.merchant.platform, deque()).append(bag)
    result = ParityResult()
    deadline = pacer.clock() + settings.PARITY_CHECK_MAX_RUN_SECONDS
    while queues:
        # The platform whose turn comes first; the others are not held up by a slow one.
        platform = min(queues, key=pacer.ready_at)
        if max(pacer.ready_at(platform), pacer.clock()) >= deadline:
            break
        bag = queues[platform].popleft()
        if not queues[platform]:
            del queues[platform]
        pacer.take(platform, READ_CALLS.get(platform, 1))
        outcome = bag_parity_check(bag, now=now)
        result.bags_checked += 1
        result.refunds_found += outcome.refunds_found
        result.cancellations_found += int(outcome.cancellation_found)
        if outcome.error:
            result.errors.append(f"bag {bag.pk}: {outcome.error}")
        if outcome.throttled:
            logger.warning("Parity check: %s answered 429; its other bags wait for the next run", platform)
            result.left_for_next_run += len(queues.pop(platform, ()))
    result.left_for_next_run += sum(len(queue) for queue in queues.values())
    if result.refunds_found or result.cancellations_found:
        logger.warning(
            "Parity check found %s refund(s) and %s cancellation(s) no webhook or poll reported",
            result.refunds_found,
            result.cancellations_found,
        )
    return result


@dataclass(frozen=True)
class BagParity:
    refunds_found: int = 0
    cancellation_found: bool = False
    error: str = ""
    throttled: bool = False


def bag_parity_check(bag: Bag, *, now: datetime | None = None) -> BagParity:
    """Read the bag's order from its platform, reconcile, and record when that was done."""
    now = now or timezone.now()
    connection = bag.merchant.connection
    adapter = get_adapter(bag.merchant.platform)
    if adapter is None or not bag.external_id:
        return BagParity(error="no adapter or no platform order id")
    try:
        state = adapter.read_order_state(connection, bag.external_id)
    except PlatformUnavailable as exc:
        # Timeouts, 5xx, 429: not consolidated, so the next run reads it again.
        logger.warning("Parity check of bag %s: %s", bag.pk, exc.message)
        return BagParity(error=exc.message, throttled=exc.http_status == 429)
    except PlatformNotFound as exc:
        logger.warning("Parity check of bag %s: the platform has no order %s", bag.pk, bag.external_id)
        _consolidated(bag, now)
        return BagParity(error=exc.message)
    except (PlatformClientError, PlatformDataInvalid, EventIgnored) as exc:
        message = getattr(exc, "message", None) or str(exc)
        logger.warning("Parity check of bag %s failed: %s", bag.pk, message)
        connection_auth_failure(connection, exc)  # a 401: INVALID, the merchant is told
        _consolidated(bag, now)
        return BagParity(error=message)
    was_canceled = bag.status == BagStatus.CANCELED
    reconciled = order_reconcile(bag, _without_recent_refunds(state, now), None, source=RefundSource.PARITY_CHECK)
    for refund in reconciled.recorded:
        logger.warning(
            "Parity check: refund %s (external id %s) of bag %s was never signalled; recorded now",
            refund.pk,
            refund.external_id,
            bag.pk,
        )
    _consolidated(bag, now)
    return BagParity(
        refunds_found=len(reconciled.recorded), cancellation_found=bool(state.cancelled and not was_canceled)
    )


def _without_recent_refunds(state: OrderState, now: datetime) -> OrderState:
    """Refunds younger than the grace period are left to their webhook (still on its way)."""
    grace_start = now - timedelta(seconds=settings.PARITY_CHECK_GRACE_SECONDS)
    kept = tuple(refund for refund in state.refunds if refund.created_at is None or refund.created_at < grace_start)
    return state if len(kept) == len(state.refunds) else replace(state, refunds=kept)


def _consolidated(bag: Bag, now: datetime) -> None:
    Bag.objects.filter(pk=bag.pk).update(date_last_consolidated=now)
    bag.date_last_consolidated = now

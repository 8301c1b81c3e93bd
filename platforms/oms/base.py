"""The order-management-system (OMS) adapter interface (issue #25).

An SFCC merchant in SfccRefundMode.ORDER_MANAGEMENT makes its refunds in its OMS, not in Commerce
Cloud. Each OMS we read is one module in this package implementing `OmsAdapter`; `platforms.oms`
finds it by `OmsConnection.system`. Everything after discovery is the platforms' common path: each
discovered refund is stored as an InboundEvent (topic OMS_TOPIC) on the merchant's StoreConnection
and processed like any poll result (dedupe, AWAITING_ORDER, retries, replay, parity), the SFCC
adapter handing OMS events back to the OMS adapter for their OrderState.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from platforms.adapters.base import OrderState
from platforms.clients.base import PlatformUnavailable

if TYPE_CHECKING:
    from platforms.models import Merchant, OmsConnection

# Events of discovered OMS refunds. The `poll/` prefix makes their refunds source PLATFORM_POLL.
OMS_TOPIC = "poll/oms_refund"


class OmsLimitReached(PlatformUnavailable):
    """The OMS says its API limits are reached (or nearly): leave the org alone for a while."""

    error_code = "oms_limit_reached"


@dataclass(frozen=True)
class DiscoveredRefund:
    """One refund document of the OMS (Salesforce: a credit memo), ready to be stored as an event."""

    external_id: str  # the OMS's own id of the refund (one refund per id, ever)
    order_number: str  # the storefront order number the refund belongs to
    changed_at: datetime | None
    body: Mapping  # everything `order_state_from_body` needs, stored verbatim as the event body


@dataclass(frozen=True)
class Discovery:
    """One run over an org: the refunds read, and how far the cursor may move."""

    refunds: tuple[DiscoveredRefund, ...] = ()
    # The instant up to which every change was read (None: nothing could be read).
    read_until: datetime | None = None
    # True when the run read everything changed up to `read_until` = the run's end (not cut short).
    complete: bool = False
    error: str = ""
    limit_reached: bool = False
    api_usage: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


class OmsAdapter(Protocol):
    system: str
    label: str

    def credentials_validate(self, *, base_url: str, credentials: Mapping[str, str], session=None) -> str:
        """Real calls (a token, a test query) proving the credentials work; returns a label of the org.
        Raises PlatformAuthenticationFailed / PlatformRequestRejected (wrong credentials or
        permissions) or PlatformUnavailable (not reachable now)."""

    def refunds_discover(
        self, connection: OmsConnection, *, since: datetime, until: datetime, limit: int, session=None
    ) -> Discovery:
        """The refunds changed in (since, until], at most `limit`, oldest first. Raises
        PlatformClientError when nothing at all could be read."""

    def order_state_from_body(self, body: Mapping, *, merchant: Merchant, topic: str) -> OrderState:
        """The OrderState (one PlatformRefund) a stored discovery stands for."""

    def order_refunds_read(self, connection: OmsConnection, order_number: str, *, topic: str) -> OrderState:
        """Every refund the OMS holds for one storefront order (the parity check)."""

"""What every platform's webhook-subscription registrar offers (issue #24).

A registrar speaks one platform's subscription API for one store, through that platform's client
(so through violet_refunds.outbound, with the client's retries and typed errors). It only lists,
creates, updates and deletes; deciding what to do is platforms.subscriptions.services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RemoteSubscription:
    """A subscription as the platform holds it."""

    platform_id: str
    topic: str
    address: str
    # False: the platform holds it but does not deliver (WooCommerce paused/disabled, BigCommerce
    # is_active false). Shopify removes failing subscriptions instead of disabling them.
    active: bool = True
    # The API version its payloads are written in, when the platform says ("" otherwise).
    api_version: str = ""


class Registrar(Protocol):
    @property
    def carries_secret(self) -> bool:
        """Whether the subscription carries our webhook secret (BigCommerce header, WooCommerce
        secret); False where the platform signs with the app's own secret (Shopify)."""

    @property
    def api_version(self) -> str:
        """The API version payloads should be written in ("" when the platform has none)."""

    def topic_matches(self, remote: RemoteSubscription, topic: str) -> bool:
        """Whether `remote` is a subscription to `topic` (as the adapter spells it)."""

    def subscriptions_list(self) -> list[RemoteSubscription]:
        """Every subscription the platform shows this app for the store."""

    def subscription_create(self, *, topic: str, address: str, secret: str) -> RemoteSubscription: ...

    def subscription_update(self, remote: RemoteSubscription, *, address: str, secret: str) -> RemoteSubscription:
        """Point it at `address`, with `secret` (when it carries one), delivering (active)."""

    def subscription_delete(self, remote: RemoteSubscription) -> None: ...

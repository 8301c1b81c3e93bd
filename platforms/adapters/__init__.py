"""Platform adapters, one module per platform; `get_adapter` is how everything else finds them."""

from typing import cast

from platforms.adapters.base import PlatformAdapter, PollingAdapter
from platforms.adapters.bigcommerce import BigCommerceAdapter
from platforms.adapters.ecwid import EcwidAdapter
from platforms.adapters.sfcc import SfccAdapter
from platforms.adapters.shopify import ShopifyAdapter
from platforms.adapters.wix import WixAdapter
from platforms.adapters.woocommerce import WooCommerceAdapter

ADAPTERS: dict[str, PlatformAdapter] = {
    adapter.platform: adapter
    for adapter in (
        ShopifyAdapter(),
        EcwidAdapter(),
        WixAdapter(),
        SfccAdapter(),
        BigCommerceAdapter(),
        WooCommerceAdapter(),
    )
}


def get_adapter(platform: str) -> PlatformAdapter | None:
    return ADAPTERS.get(platform)


def webhook_adapter_for_slug(slug: str) -> PlatformAdapter | None:
    """The adapter named by the URL segment (/webhooks/shopify/...), if that platform sends webhooks."""
    adapter = ADAPTERS.get(slug.upper())
    return adapter if adapter is not None and adapter.receives_webhooks else None


def polling_adapters() -> list[PollingAdapter]:
    """The adapters of platforms that are polled for orders instead of (or besides) webhooks."""
    return [cast(PollingAdapter, adapter) for adapter in ADAPTERS.values() if adapter.polls_orders]

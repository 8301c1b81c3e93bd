"""Webhook subscriptions at the platforms (issue #24): each adapter declares what it needs
(`PlatformAdapter.subscriptions`), one module per platform registers it through the platform's
client, and `services.subscriptions_sync` keeps a store's subscriptions as declared."""

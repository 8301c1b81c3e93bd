"""Polling is a capability of an adapter: platforms.services.platform_orders_poll asks the adapters
that poll, and knows nothing of any one platform."""

from platforms.adapters import ADAPTERS, polling_adapters
from platforms.models import Platform


def test_every_adapter_says_whether_it_polls():
    assert all(isinstance(adapter.polls_orders, bool) for adapter in ADAPTERS.values())


def test_only_sfcc_is_polled_and_it_can_poll():
    (adapter,) = polling_adapters()
    assert adapter.platform == Platform.SFCC
    assert callable(adapter.connections_to_poll) and callable(adapter.connection_poll)


def test_the_generic_service_holds_no_sfcc_specifics():
    import platforms.services as services

    assert not hasattr(services, "sfcc_connection_poll")
    assert not any(name.startswith("SFCC_") for name in vars(services))

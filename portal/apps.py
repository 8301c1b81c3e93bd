from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The merchants' face (/portal/): pages, the refund-notice API and its keys. It owns no models:
    every read goes through portal.selectors, every write through the services below it."""

    name = "portal"
    verbose_name = "Merchant portal"

from django.apps import AppConfig
from django.conf import settings


def sandbox_in_use() -> bool:
    """Whether the built-in sandbox answers the product's Stripe calls (no STRIPE_API_KEY)."""
    return not settings.STRIPE_API_KEY


class StripeSandboxConfig(AppConfig):
    """The emulated Stripe. Installed in every deployment, even on real Stripe: its migrations belong to
    the schema history (removing the app would break `migrate` on existing databases) and its empty
    tables cost nothing. What depends on the sandbox being in use is its admin pages
    (stripe_sandbox.admin registers them only then) and the gateway's transport (payments.gateway)."""

    name = "stripe_sandbox"
    verbose_name = "Stripe sandbox"

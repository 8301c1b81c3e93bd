from django.apps import AppConfig


class StripeEventsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "stripe_events"
    verbose_name = "Stripe events"

"""/webhooks/stripe/<endpoint public id>/ (included before the platforms' /webhooks/<platform>/<id>/)."""

from django.urls import re_path

from stripe_events import views

app_name = "stripe_events"

urlpatterns = [
    # The trailing slash is optional: Stripe posts to the URL exactly as registered.
    re_path(r"^(?P<public_id>[^/]+)/?$", views.receive_stripe_webhook, name="webhook"),
]

"""Inbound platform webhooks: /webhooks/<platform>/<connection public id>/."""

from django.urls import re_path

from platforms import views

app_name = "platforms"

urlpatterns = [
    # The trailing slash is optional: platforms post to the URL exactly as registered, and a POST
    # cannot be redirected to the slashed form.
    re_path(r"^(?P<platform>[A-Za-z0-9_-]+)/(?P<public_id>[^/]+)/?$", views.receive_webhook, name="webhook"),
]

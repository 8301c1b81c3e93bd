"""Inbound platform webhooks: /webhooks/<platform>/<connection public id>/, and the app-level
/webhooks/ecwid/ and /webhooks/wix/ (one URL per app, routed by the store the body names)."""

from django.urls import re_path

from platforms import views

app_name = "platforms"

urlpatterns = [
    re_path(r"^(?P<platform>ecwid|wix|shopify)/?$", views.receive_app_webhook, name="app_webhook"),
    # The trailing slash is optional: platforms post to the URL exactly as registered, and a POST
    # cannot be redirected to the slashed form.
    re_path(r"^(?P<platform>[A-Za-z0-9_-]+)/(?P<public_id>[^/]+)/?$", views.receive_webhook, name="webhook"),
]

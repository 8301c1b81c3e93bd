"""Inbound platform webhooks: /webhooks/<platform>/<connection public id>/."""

app_name = "platforms"

urlpatterns = []

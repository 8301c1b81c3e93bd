"""Merchant portal under /portal/."""

app_name = "portal"

urlpatterns = []

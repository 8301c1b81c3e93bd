"""Webhook and event endpoints of the channel API; included by refunds.api.urls under /v1/ (its
`api` namespace), ahead of its catch-all 404."""

from django.urls import path

from notifications import api

urlpatterns = [
    path("events/webhooks", api.WebhooksView.as_view(), name="webhooks"),
    path("events/webhooks/<int:webhook_id>", api.WebhookDetailView.as_view(), name="webhook-detail"),
    path("events/webhooks/<int:webhook_id>/test", api.WebhookTestView.as_view(), name="webhook-test"),
    path("events", api.EventsView.as_view(), name="events"),
    path("events/<str:event_id>/resend", api.EventResendView.as_view(), name="event-resend"),
]

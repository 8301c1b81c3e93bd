"""The URLconf the OpenAPI schema is generated from: the channel API at its /v1/ prefix, and the
merchant refund-notice API (a portal endpoint, with its own bearer key) at its own path."""

from django.urls import include, path

from portal.api import RefundNoticeApi

urlpatterns = [
    path("v1/", include("refunds.api.urls")),
    path("portal/api/refund-notices", RefundNoticeApi.as_view()),
]

"""The URLconf the OpenAPI schema is generated from: the channel API alone, at its /v1/ prefix."""

from django.urls import include, path

urlpatterns = [path("v1/", include("refunds.api.urls"))]

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from observability.views import metrics
from violet_refunds import health


def server_error(request):
    """A 500 is a bug; under /v1/ it is still JSON in the one error shape, never an HTML page."""
    from django.views.defaults import server_error as html_server_error

    from violet_refunds.exceptions import error_body

    if request.path.startswith("/v1/"):
        return JsonResponse(error_body(500, "Internal server error.", "server_error"), status=500)
    return html_server_error(request)


handler500 = server_error


urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("refunds.api.urls")),
    path("portal/", include("portal.urls")),
    # Stripe's own webhooks first: /webhooks/<platform>/<id>/ would take /webhooks/stripe/<id>/ too.
    path("webhooks/stripe/", include("stripe_events.urls")),
    path("webhooks/", include("platforms.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/", include("refunds.api.urls")),
    path("webhooks/", include("platforms.urls")),
    path("healthz", healthz, name="healthz"),
]

"""Channel API under /v1/ (paths as Violet names them: no trailing slash)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from refunds.api import views

app_name = "api"

urlpatterns = [
    path("login", views.LoginView.as_view(), name="login"),
    path("auth/token", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("orders/<int:order_id>/refunds", views.OrderRefundsView.as_view(), name="order-refunds"),
    path(
        "orders/<int:order_id>/refunds/<int:refund_id>",
        views.RefundDetailView.as_view(),
        name="refund-detail",
    ),
    path(
        "orders/<int:order_id>/bags/<int:bag_id>/refunds",
        views.BagRefundsView.as_view(),
        name="bag-refunds",
    ),
    path("orders/<int:order_id>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<int:order_id>/bags/<int:bag_id>/cancel", views.BagCancelView.as_view(), name="bag-cancel"),
    # Outbound webhooks: registration, the app's events, resend (notifications app).
    path("", include("notifications.urls")),
    # The schema describes this API alone, at its public /v1/ prefix (not the whole project).
    path("schema/", SpectacularAPIView.as_view(urlconf="refunds.api.schema_urlconf"), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Last: every other path under /v1/ gets the API's JSON 404.
    re_path(r"^.*$", views.UnknownEndpointView.as_view(), name="unknown"),
]

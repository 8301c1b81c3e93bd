"""Merchant portal under /portal/: server-rendered pages (login required) and the refund-notice API."""

from django.urls import path

from portal import api, mirror, privacy_views, views

app_name = "portal"

urlpatterns = [
    # Authentication: Django's views with portal templates; login attempts throttled by django-axes.
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    # Pages.
    path("", views.home, name="home"),
    path("orders/", views.order_list, name="orders"),
    path("orders/<int:bag_id>/", views.order_detail, name="order_detail"),
    path("orders/<int:bag_id>/report-refund/", views.refund_report, name="refund_report"),
    path("refunds/", views.refund_list, name="refunds"),
    path("refunds/<int:refund_id>/", views.refund_detail, name="refund_detail"),
    path("refunds-to-mirror/", mirror.mirror_list, name="mirror"),
    path("refunds-to-mirror/<int:task_id>/", mirror.mirror_mark, name="mirror_mark"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
    path("connect/wix/", views.connect_wix, name="connect_wix"),
    path("connect/oms/", views.connect_oms, name="connect_oms"),
    path("connect/oms/disconnect/", views.disconnect_oms, name="disconnect_oms"),
    # Privacy (issue #22): disconnect a store; customer data requests and their download.
    path("stores/<int:merchant_id>/disconnect/", privacy_views.connection_disconnect, name="connection_disconnect"),
    path("privacy-requests/", privacy_views.privacy_requests, name="privacy_requests"),
    path(
        "privacy-requests/<int:request_id>/download/",
        privacy_views.privacy_request_download,
        name="privacy_request_download",
    ),
    # The refund-notice API (SFCC Option 2), authenticated by a merchant API key.
    path("api/refund-notices", api.RefundNoticeApi.as_view(), name="api_refund_notices"),
]

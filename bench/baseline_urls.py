"""The benchmark server's URLconf: the product's URLs unchanged, plus the baselines under /bench/."""

from django.urls import path

from bench import baseline_views
from violet_refunds.urls import handler500  # noqa: F401 - same 500 page
from violet_refunds.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("bench/plain", baseline_views.PlainView.as_view()),
    path("bench/parents/<int:parent_id>", baseline_views.ParentWithChildrenView.as_view()),
    path("bench/signed-insert", baseline_views.SignedInsertView.as_view()),
    *product_urlpatterns,
]

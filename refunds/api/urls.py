"""Channel API under /v1/."""

app_name = "api"

urlpatterns = []

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from feedback.databricks_api import DatabricksFeedbackApi
from reviewapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz/", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Before agents.urls: /requests/agreement/ is not a request id (requests/<request_id>/).
    path("", include("review.urls")),
    path("", include("inference_tables.urls")),
    path("", include("dashboards.urls")),
    path("", include("evaluation.urls")),
    path("", include("agents.urls")),
    path("", include("feedback.urls")),
    path("api/v1/", include("agents.api_urls")),
    path("api/v1/", include("feedback.api_urls")),
    path("api/v1/", include("review.api_urls")),
    path("api/v1/", include("inference_tables.api_urls")),
    path("api/v1/", include("evaluation.api_urls")),
    path("api/v1/", include("manifests.api_urls")),
    # Where Databricks clients send feedback: only the host changes (protocol.md §4.1).
    path(
        "serving-endpoints/<str:endpoint_name>/served-models/feedback/invocations",
        DatabricksFeedbackApi.as_view(),
        name="databricks-feedback",
    ),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# Under /api/ the errors Django answers itself (no URL matched, an uncaught exception) are JSON.
handler400 = "reviewapp.views.bad_request"
handler403 = "reviewapp.views.permission_denied"
handler404 = "reviewapp.views.page_not_found"
handler500 = "reviewapp.views.server_error"

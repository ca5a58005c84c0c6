from django.urls import path

from inference_tables import views

urlpatterns = [
    path(
        "exports/requests/<str:format_name>/",
        views.RequestExportApi.as_view(),
        name="api-export-requests",
    ),
    path(
        "exports/assessments/<str:format_name>/",
        views.AssessmentExportApi.as_view(),
        name="api-export-assessments",
    ),
    path(
        "deployments/<int:pk>/request-log/import/",
        views.RequestLogImportApi.as_view(),
        name="api-import-request-log",
    ),
]

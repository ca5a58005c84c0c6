from django.urls import path

from inference_tables import views

app_name = "inference_tables"
urlpatterns = [
    path("requests/export/<str:format_name>/", views.request_export, name="request_export"),
    path(
        "assessments/export/<str:format_name>/",
        views.assessment_export,
        name="assessment_export",
    ),
]

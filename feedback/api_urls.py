from django.urls import path

from feedback import apis, label_schema_apis

urlpatterns = [
    path(
        "requests/<str:request_id>/assessments/",
        apis.RequestAssessmentCreateApi.as_view(),
        name="api-request-assessments",
    ),
    path(
        "deployments/<int:pk>/label-schemas/",
        label_schema_apis.DeploymentLabelSchemasApi.as_view(),
        name="api-deployment-label-schemas",
    ),
    path(
        "label-schemas/", label_schema_apis.LabelSchemaListApi.as_view(), name="api-label-schemas"
    ),
    path(
        "label-schemas/<str:name>/",
        label_schema_apis.LabelSchemaDetailApi.as_view(),
        name="api-label-schema-detail",
    ),
    path("assessments/", apis.AssessmentListApi.as_view(), name="api-assessment-list"),
    path("assessments/<int:pk>/", apis.AssessmentDetailApi.as_view(), name="api-assessment-detail"),
]

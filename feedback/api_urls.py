from django.urls import path

from feedback import apis

urlpatterns = [
    path(
        "requests/<str:request_id>/assessments/",
        apis.RequestAssessmentCreateApi.as_view(),
        name="api-request-assessments",
    ),
    path(
        "deployments/<int:pk>/questions/",
        apis.DeploymentQuestionsApi.as_view(),
        name="api-deployment-questions",
    ),
    path("assessments/", apis.AssessmentListApi.as_view(), name="api-assessment-list"),
    path("assessments/<int:pk>/", apis.AssessmentDetailApi.as_view(), name="api-assessment-detail"),
]

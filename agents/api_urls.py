from django.urls import path

from agents import apis

urlpatterns = [
    path("deployments/", apis.DeploymentListApi.as_view(), name="api-deployment-list"),
    path("deployments/<int:pk>/", apis.DeploymentDetailApi.as_view(), name="api-deployment-detail"),
]

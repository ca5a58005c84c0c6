from django.urls import path

from agents import apis, chat_apis

urlpatterns = [
    path("deployments/", apis.DeploymentListApi.as_view(), name="api-deployment-list"),
    path("deployments/<int:pk>/", apis.DeploymentDetailApi.as_view(), name="api-deployment-detail"),
    path("deployments/<int:pk>/chat/", chat_apis.chat_api, name="api-chat"),
    path("requests/", chat_apis.RequestListApi.as_view(), name="api-request-list"),
    path(
        "requests/<str:request_id>/",
        chat_apis.RequestDetailApi.as_view(),
        name="api-request-detail",
    ),
]

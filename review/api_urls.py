from django.urls import path

from review import apis, mlflow_apis

urlpatterns = [
    path("agreement/", apis.AgreementApi.as_view(), name="api-agreement"),
    path(
        "review-sessions/<int:pk>/mlflow/import-traces/",
        mlflow_apis.ImportTracesApi.as_view(),
        name="api-review-session-mlflow-import",
    ),
    path(
        "review-sessions/<int:pk>/mlflow/mirror/",
        mlflow_apis.MirrorApi.as_view(),
        name="api-review-session-mlflow-mirror",
    ),
    path(
        "review-sessions/<int:pk>/mlflow/dataset/",
        mlflow_apis.DatasetApi.as_view(),
        name="api-review-session-mlflow-dataset",
    ),
]

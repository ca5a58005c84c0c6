from django.urls import path

from evaluation import apis, run_apis

urlpatterns = [
    path("datasets/", apis.DatasetListApi.as_view(), name="api-datasets"),
    path(
        "datasets/<str:name>/versions/",
        apis.DatasetVersionCreateApi.as_view(),
        name="api-dataset-versions",
    ),
    path(
        "datasets/<str:name>/versions/<int:number>/",
        apis.DatasetVersionApi.as_view(),
        name="api-dataset-version",
    ),
    path(
        "datasets/<str:name>/versions/from-session/",
        apis.SessionDatasetVersionApi.as_view(),
        name="api-dataset-from-session",
    ),
    path("runs/", run_apis.RunListApi.as_view(), name="api-runs"),
    path("runs/<str:name>/", run_apis.RunApi.as_view(), name="api-run"),
    path("runs/<str:name>/rows/", run_apis.RunRowsApi.as_view(), name="api-run-rows"),
    path("runs/<str:name>/cancel/", run_apis.RunCancelApi.as_view(), name="api-run-cancel"),
    path("runs/<str:name>/resume/", run_apis.RunResumeApi.as_view(), name="api-run-resume"),
    path(
        "runs/<str:name>/compare/<str:other>/",
        run_apis.RunCompareApi.as_view(),
        name="api-run-compare",
    ),
]

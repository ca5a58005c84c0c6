from django.urls import path

from evaluation import apis

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
]

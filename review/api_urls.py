from django.urls import path

from review import apis, mlflow_apis, session_apis

SESSION = "review-sessions/<int:pk>/"
ITEM = SESSION + "items/<int:item_id>/"

urlpatterns = [
    path("agreement/", apis.AgreementApi.as_view(), name="api-agreement"),
    path("review-sessions/", session_apis.SessionListApi.as_view(), name="api-review-sessions"),
    path(SESSION, session_apis.SessionDetailApi.as_view(), name="api-review-session"),
    path(SESSION + "items/", session_apis.SessionItemsApi.as_view(), name="api-review-items"),
    path(SESSION + "next/", session_apis.SessionNextApi.as_view(), name="api-review-next"),
    path(ITEM, session_apis.SessionItemDetailApi.as_view(), name="api-review-item"),
    path(ITEM + "labels/", session_apis.ItemLabelApi.as_view(), name="api-review-item-labels"),
    path(ITEM + "skip/", session_apis.ItemSkipApi.as_view(), name="api-review-item-skip"),
    path(ITEM + "settle/", session_apis.ItemSettleApi.as_view(), name="api-review-item-settle"),
    path(
        SESSION + "agreement/",
        session_apis.SessionAgreementApi.as_view(),
        name="api-review-session-agreement",
    ),
    path(
        SESSION + "disagreements/",
        session_apis.SessionDisagreementsApi.as_view(),
        name="api-review-session-disagreements",
    ),
    path(
        SESSION + "mlflow/import-traces/",
        mlflow_apis.ImportTracesApi.as_view(),
        name="api-review-session-mlflow-import",
    ),
    path(
        SESSION + "mlflow/mirror/",
        mlflow_apis.MirrorApi.as_view(),
        name="api-review-session-mlflow-mirror",
    ),
    path(
        SESSION + "mlflow/dataset/",
        mlflow_apis.DatasetApi.as_view(),
        name="api-review-session-mlflow-dataset",
    ),
]

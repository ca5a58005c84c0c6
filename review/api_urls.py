from django.urls import path

from review import apis

urlpatterns = [
    path("agreement/", apis.AgreementApi.as_view(), name="api-agreement"),
]

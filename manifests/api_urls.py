from django.urls import path

from manifests import apis

urlpatterns = [
    path("manifest/", apis.ManifestApi.as_view(), name="api-manifest"),
    path("manifest/apply/", apis.ManifestApplyApi.as_view(), name="api-manifest-apply"),
    path("manifest/schema/", apis.ManifestSchemaApi.as_view(), name="api-manifest-schema"),
]

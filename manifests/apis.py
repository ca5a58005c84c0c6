"""The manifest over the REST API (what `reviewapp apply` and `reviewapp export` call): the
current state, applying one (admins), and its JSON Schema."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from manifests import selectors, services
from manifests.schema import MANIFEST_SCHEMA
from reviewapp import roles


class ManifestApi(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="The manifest (admins).")})
    def get(self, request: Request) -> Response:
        if not roles.is_admin(request.user):
            raise PermissionDenied("Only admins may export the configuration.")
        return Response(selectors.manifest_export())


class ManifestApplyApi(APIView):
    @extend_schema(
        request={"application/json": {"type": "object"}},
        responses={
            200: OpenApiResponse(description="{changes: [{kind, key, action, fields}], ...}"),
            400: OpenApiResponse(description="{field: [why]}: nothing was applied"),
        },
    )
    def post(self, request: Request) -> Response:
        """Body: {manifest, dry_run?, prune?}."""
        body = request.data if isinstance(request.data, dict) else {}
        dry_run, prune = bool(body.get("dry_run")), bool(body.get("prune"))
        changes = services.manifest_apply(
            user=request.user, manifest=body.get("manifest"), dry_run=dry_run, prune=prune
        )
        return Response({"dry_run": dry_run, "changes": [change.as_dict() for change in changes]})


class ManifestSchemaApi(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="A JSON Schema (2020-12).")})
    def get(self, request: Request) -> Response:
        return Response(MANIFEST_SCHEMA)

"""REST API for a review session's MLflow side (admins): import an experiment's traces as
items, mirror the session to MLflow's label schemas and review queue, and write its
expectations as an evaluation dataset. Each calls the tracking server while the request waits
(review.mlflow_import, review.mlflow_mirror, review.mlflow_dataset)."""

from dataclasses import asdict

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Deployment
from review import session_selectors
from review.mlflow_dataset import session_expectations_to_mlflow_dataset
from review.mlflow_import import session_import_mlflow_traces
from review.mlflow_mirror import session_mirror_to_mlflow


class _MlflowRequest(serializers.Serializer):
    experiment_id = serializers.CharField(max_length=64)
    deployment = serializers.PrimaryKeyRelatedField(
        queryset=Deployment.objects.all(),
        required=False,
        allow_null=True,
        help_text="The deployment whose tracking server to use, when the session has several.",
    )


class ImportTracesRequest(_MlflowRequest):
    deployment = serializers.PrimaryKeyRelatedField(
        queryset=Deployment.objects.all(), help_text="The turns' deployment (one of the session's)."
    )
    filter_string = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="MLflow's trace search filter."
    )
    max_results = serializers.IntegerField(min_value=1, max_value=1000, default=100)

    class Meta:
        ref_name = "ImportTracesRequest"


class MirrorRequest(_MlflowRequest):
    class Meta:
        ref_name = "MlflowMirrorRequest"


class DatasetRequest(_MlflowRequest):
    name = serializers.CharField(max_length=200, help_text="The evaluation dataset's name.")

    class Meta:
        ref_name = "MlflowDatasetRequest"


def _body(serializer_class, request: Request) -> dict:
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


class ImportTracesApi(APIView):
    @extend_schema(
        request=ImportTracesRequest,
        responses={
            201: inline_serializer(
                "ImportTracesResult",
                {
                    "found": serializers.IntegerField(),
                    "imported": serializers.IntegerField(),
                    "added": serializers.IntegerField(),
                    "skipped": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        """Traces of an MLflow experiment that match the filter (newest first) become turns of
        the deployment, once each, and items of the session."""
        session = session_selectors.session_get_for_user(request.user, pk)
        body = _body(ImportTracesRequest, request)
        result = session_import_mlflow_traces(session=session, user=request.user, **body)
        return Response(asdict(result), status=status.HTTP_201_CREATED)


class MirrorApi(APIView):
    @extend_schema(
        request=MirrorRequest,
        responses=inline_serializer(
            "MlflowMirrorResult",
            {
                "queue_id": serializers.CharField(),
                "schema_ids": serializers.DictField(child=serializers.CharField()),
                "schemas_created": serializers.IntegerField(),
                "schemas_updated": serializers.IntegerField(),
                "items_attached": serializers.IntegerField(),
                "items_not_in_experiment": serializers.IntegerField(),
                "items_without_trace": serializers.IntegerField(),
                "items_completed": serializers.IntegerField(),
            },
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        """Create or update the session's label schemas and review queue in the experiment, add
        its items and mark the complete ones; running it again never duplicates anything."""
        session = session_selectors.session_get_for_user(request.user, pk)
        body = _body(MirrorRequest, request)
        result = session_mirror_to_mlflow(session=session, user=request.user, **body)
        return Response(asdict(result))


class DatasetApi(APIView):
    @extend_schema(
        request=DatasetRequest,
        responses=inline_serializer(
            "MlflowDatasetResult",
            {
                "dataset_id": serializers.CharField(),
                "records": serializers.IntegerField(),
                "inserted": serializers.IntegerField(),
                "updated": serializers.IntegerField(),
                "items_without_expectations": serializers.IntegerField(),
                "items_with_conflicts": serializers.IntegerField(),
            },
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        """Write the items' expectations ({inputs, expectations}) to an evaluation dataset."""
        session = session_selectors.session_get_for_user(request.user, pk)
        body = _body(DatasetRequest, request)
        result = session_expectations_to_mlflow_dataset(session=session, user=request.user, **body)
        return Response(asdict(result))

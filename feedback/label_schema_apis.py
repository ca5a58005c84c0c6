"""REST API for label schemas: list and read them (every signed-in user), create, change and
delete them (admins), and set the ones a deployment's chat asks."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors as agent_selectors
from feedback import label_schema_services
from feedback.label_values import label_schemas_for
from feedback.models import LabelSchema
from feedback.serializers import DeploymentLabelSchemasSerializer, LabelSchemaSerializer
from reviewapp.api import IsAdminForWrites


def _schema_data(request: Request, schema: LabelSchema | None = None) -> dict:
    """The body's fields, checked for shape by the serializer and for sense by the model. A
    change (`schema` given) may hold only some fields, and may repeat the schema's own name."""
    serializer = LabelSchemaSerializer(schema, data=request.data, partial=schema is not None)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class LabelSchemaListApi(APIView):
    permission_classes = [IsAdminForWrites]

    @extend_schema(responses=LabelSchemaSerializer(many=True), operation_id="label_schemas_list")
    def get(self, request: Request) -> Response:
        """Every label schema, by name."""
        return Response(LabelSchemaSerializer(LabelSchema.objects.all(), many=True).data)

    @extend_schema(request=LabelSchemaSerializer, responses={201: LabelSchemaSerializer})
    def post(self, request: Request) -> Response:
        schema = label_schema_services.label_schema_save(data=_schema_data(request))
        return Response(LabelSchemaSerializer(schema).data, status=status.HTTP_201_CREATED)


class LabelSchemaDetailApi(APIView):
    permission_classes = [IsAdminForWrites]

    @extend_schema(responses=LabelSchemaSerializer, operation_id="label_schemas_retrieve")
    def get(self, request: Request, name: str) -> Response:
        return Response(LabelSchemaSerializer(get_object_or_404(LabelSchema, name=name)).data)

    @extend_schema(request=LabelSchemaSerializer, responses=LabelSchemaSerializer)
    def patch(self, request: Request, name: str) -> Response:
        """Change the fields given; a schema with labels keeps its name, kind and input type."""
        schema = get_object_or_404(LabelSchema, name=name)
        data = _schema_data(request, schema)
        return Response(
            LabelSchemaSerializer(
                label_schema_services.label_schema_save(schema=schema, data=data)
            ).data
        )

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        """Refused (400) while the schema has labels or a deployment or session uses it."""
        label_schema_services.label_schema_delete(schema=get_object_or_404(LabelSchema, name=name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeploymentLabelSchemasApi(APIView):
    """The label schemas a deployment's chat asks under each answer, in order."""

    permission_classes = [IsAdminForWrites]

    @extend_schema(responses=LabelSchemaSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        deployment = agent_selectors.deployment_get_for_user(request.user, pk)
        return Response(LabelSchemaSerializer(label_schemas_for(deployment), many=True).data)

    @extend_schema(
        request=DeploymentLabelSchemasSerializer, responses=LabelSchemaSerializer(many=True)
    )
    def put(self, request: Request, pk: int) -> Response:
        """Replace them: `{"label_schemas": [name, ...]}`; an empty list brings back the
        default thumbs question."""
        deployment = agent_selectors.deployment_get_for_user(request.user, pk)
        body = DeploymentLabelSchemasSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        schemas = label_schema_services.deployment_label_schemas_set(
            deployment=deployment, names=body.validated_data["label_schemas"]
        )
        return Response(LabelSchemaSerializer(schemas, many=True).data)

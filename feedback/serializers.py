"""The shapes the ratings API speaks, for its OpenAPI schema: the feedback payload of
protocol.md §4.2 (text and retrieval assessments), a rating with its delivery, an assessment-log
row (§4.3) and the label schemas. Validation itself is feedback.validation's: these only
describe."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.models import LABEL_SCHEMA_FIELDS, DeliveryStatus, LabelSchema
from reviewapp.jsonlimits import DepthLimitedJSONField


class RatingValueSerializer(serializers.Serializer):
    value = serializers.JSONField(
        help_text='The answer: "positive"/"negative" for thumbs, an option, a number or text.'
    )
    rationale = serializers.CharField(required=False)

    class Meta:
        ref_name = "RatingValue"


class TextAssessmentSerializer(serializers.Serializer):
    step_id = serializers.CharField(required=False, allow_null=True)
    ratings = serializers.DictField(
        child=RatingValueSerializer(), help_text="Feedback label schema name → its answer."
    )
    expectations = serializers.DictField(
        child=RatingValueSerializer(),
        required=False,
        help_text="Expectation label schema name → what the answer should have been "
        "(`expected_response` is `suggested_output`).",
    )
    free_text_comment = serializers.CharField(required=False, allow_null=True)
    suggested_output = serializers.CharField(
        required=False, allow_null=True, help_text="A better answer, suggested by the reviewer."
    )

    class Meta:
        ref_name = "TextAssessment"


class RetrievalAssessmentSerializer(serializers.Serializer):
    position = serializers.IntegerField(
        required=False,
        help_text="The document's index in the span's output; absent when the item rates the "
        "retrieval as a whole.",
    )
    step_id = serializers.CharField(required=False, help_text="The retriever span's id.")
    ratings = serializers.DictField(
        child=RatingValueSerializer(),
        help_text="`chunk_relevance` → its answer for a document; any names for a whole retrieval.",
    )
    free_text_comment = serializers.CharField(required=False, allow_null=True)

    class Meta:
        ref_name = "RetrievalAssessment"


@extend_schema_field(TextAssessmentSerializer(many=True))
class TextAssessmentsField(DepthLimitedJSONField):
    """Taken as JSON and checked whole by feedback.validation (errors name the exact place)."""


@extend_schema_field(RetrievalAssessmentSerializer(many=True))
class RetrievalAssessmentsField(DepthLimitedJSONField):
    """Taken as JSON and checked whole by feedback.validation (errors name the exact place)."""


class SourceSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The reviewer's email, else their username.")
    type = serializers.CharField(help_text="`human`.")

    class Meta:
        ref_name = "AssessmentSource"


class LogSourceSerializer(SourceSerializer):
    tags = serializers.DictField(child=serializers.CharField())

    class Meta:
        ref_name = "AssessmentLogSource"


class DeliveryAttemptSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField()
    error = serializers.CharField()
    batch_size = serializers.IntegerField()

    class Meta:
        ref_name = "DeliveryAttempt"


class DeliverySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    sink = serializers.CharField()
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    sent_at = serializers.DateTimeField(allow_null=True)
    attempt_log = DeliveryAttemptSerializer(
        many=True, required=False, help_text="Only on GET /api/v1/assessments/{id}/."
    )

    class Meta:
        ref_name = "Delivery"


class RatingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    request_id = serializers.CharField()
    deployment = serializers.IntegerField()
    source = SourceSerializer()
    text_assessments = TextAssessmentSerializer(many=True)
    retrieval_assessments = RetrievalAssessmentSerializer(many=True)
    is_current = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    delivery = DeliverySerializer(
        allow_null=True, help_text="Null when the deployment keeps its ratings here only."
    )
    destination = serializers.CharField(help_text="Where the deployment's ratings go, in words.")

    class Meta:
        ref_name = "Rating"


class AssessmentLogRowSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    step_id = serializers.CharField(allow_null=True)
    source = LogSourceSerializer()
    timestamp = serializers.DateTimeField()
    assessment_id = serializers.IntegerField(help_text="The rating this row comes from.")
    is_current = serializers.BooleanField()
    delivery_status = serializers.ChoiceField(choices=DeliveryStatus.choices, allow_null=True)
    text_assessment = TextAssessmentSerializer(allow_null=True)
    retrieval_assessment = RetrievalAssessmentSerializer(allow_null=True)

    class Meta:
        ref_name = "AssessmentLogRow"


class LabelSchemaSerializer(serializers.ModelSerializer):
    """Described here, checked by `LabelSchema.clean` (through feedback.services)."""

    options = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Categorical (list) only."
    )
    # A deployment with no label schemas of its own asks the default question, which is not
    # stored until an admin saves `answer_correct`.
    created_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null for the default question, never saved."
    )
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = LabelSchema
        fields = [*LABEL_SCHEMA_FIELDS, "created_at", "updated_at"]
        ref_name = "LabelSchema"


class DeploymentLabelSchemasSerializer(serializers.Serializer):
    label_schemas = serializers.ListField(
        child=serializers.CharField(), help_text="Label schema names, in the order asked."
    )

    class Meta:
        ref_name = "DeploymentLabelSchemasRequest"

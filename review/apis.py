"""REST API of the review app: agreement between reviewers over the turns that match the
requests page's filters (the same query parameters)."""

from django.core.exceptions import PermissionDenied
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors as agent_selectors
from review import agreement_selectors
from review.agreement import Agreement
from review.filters import RATED, STATUSES, RequestFilterForm
from reviewapp import roles


class AgreementFigureSerializer(serializers.Serializer):
    key = serializers.ChoiceField(
        choices=["percent_agreement", "cohens_kappa", "fleiss_kappa", "krippendorff_alpha"]
    )
    name = serializers.CharField(help_text='As the page shows it: "Krippendorff\'s α (nominal)".')
    value = serializers.FloatField(
        allow_null=True, help_text="null when the figure is not defined here (see note)."
    )
    items = serializers.IntegerField(help_text="The items (turns) it is computed on.")
    reading = serializers.CharField(help_text="Landis & Koch's word for it, e.g. substantial.")
    note = serializers.CharField(allow_blank=True)


class QuestionAgreementSerializer(serializers.Serializer):
    question = serializers.CharField()
    level = serializers.ChoiceField(choices=["nominal", "interval"])
    items = serializers.IntegerField(help_text="Turns with two or more answers to it.")
    reviewers = serializers.IntegerField()
    labels = serializers.IntegerField(help_text="Answers on those turns.")
    figures = AgreementFigureSerializer(many=True)


class AgreementSerializer(serializers.Serializer):
    turns = serializers.IntegerField(help_text="Turns considered: the newest that match.")
    turn_cap = serializers.IntegerField()
    capped = serializers.BooleanField(help_text="More turns matched than were considered.")
    questions = QuestionAgreementSerializer(many=True)


def agreement_figures(found: Agreement) -> list[dict]:
    """The figures as AgreementFigureSerializer describes them (also a session's, see
    review.session_serializers)."""
    return [
        {
            "key": f.key,
            "name": f.name,
            "value": f.value,
            "items": f.items,
            "reading": f.reading,
            "note": f.note,
        }
        for f in found.figures
    ]


def _agreement_dict(report: agreement_selectors.AgreementReport) -> dict:
    return {
        "turns": report.turns,
        "turn_cap": report.cap,
        "capped": report.capped,
        "questions": [
            {
                "question": q.question,
                "level": q.level,
                "items": q.agreement.items,
                "reviewers": q.agreement.reviewers,
                "labels": q.agreement.labels,
                "figures": agreement_figures(q.agreement),
            }
            for q in report.questions
        ],
    }


FILTER_PARAMETERS = [
    OpenApiParameter("deployment", int),
    OpenApiParameter("since", OpenApiTypes.DATE),
    OpenApiParameter("until", OpenApiTypes.DATE),
    OpenApiParameter("status", str, enum=[v for v, _ in STATUSES if v]),
    OpenApiParameter("rated", str, enum=[v for v, _ in RATED if v]),
    OpenApiParameter("rating", str, description="question:value, e.g. answer_correct:negative"),
    OpenApiParameter("reviewer", str, description="A reviewer's username."),
    OpenApiParameter("min_ms", int),
    OpenApiParameter("max_ms", int),
    OpenApiParameter("conversation", OpenApiTypes.UUID),
    OpenApiParameter("q", str, description="Text in the question or the answer."),
    OpenApiParameter("disagree", str, description="Only turns where reviewers differ on it."),
]


class AgreementApi(APIView):
    @extend_schema(
        parameters=FILTER_PARAMETERS, responses=AgreementSerializer, operation_id="agreement"
    )
    def get(self, request: Request) -> Response:
        """Agreement between reviewers per question (thumbs and categorical: nominal; numeric:
        interval) over the current ratings of the newest turns (up to turn_cap) that match the
        requests page's filters and carry two or more current ratings. Reviewers and admins
        only."""
        if not roles.can_review(request.user):
            raise PermissionDenied("Only reviewers and admins may see agreement between reviewers.")
        form = RequestFilterForm(
            request.query_params,
            deployments=agent_selectors.deployments_visible_to(request.user),
            can_review=True,
        )
        if not form.is_valid():
            raise exceptions.ValidationError(form.errors)
        report = agreement_selectors.agreement_by_question(request.user, form.to_filters())
        return Response(_agreement_dict(report))

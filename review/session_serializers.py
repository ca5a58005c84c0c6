"""The shapes the review-sessions API speaks. Input serializers check a body's shape only (what
it means is review.services' and review.queue's to check); output serializers describe the
answers for the OpenAPI schema, and the `*_data` functions build them in one step
(tests/test_openapi.py checks real answers against the schema)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.apis import RatingOutputSerializer
from feedback.models import Rating
from feedback.serializers import RetrievalAssessmentsField, TextAssessmentSerializer
from review.apis import AgreementFigureSerializer, agreement_figures
from review.models import MAX_REVIEWERS_PER_ITEM, ReviewItem, ReviewSession, SessionState
from review.session_selectors import ITEM_STATES, ItemPlace, Progress, SchemaAgreement
from reviewapp.jsonlimits import DepthLimitedJSONField


class ClosedSerializer(serializers.Serializer):
    # Refuses fields it does not name: a misspelt one is an error, not silently ignored.

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({k: ["Unknown field."] for k in unknown})
        return super().to_internal_value(data)


# --- Sessions ------------------------------------------------------------------------------------


class ReviewSessionInputSerializer(ClosedSerializer):
    """A session's fields; label schemas, users and groups by name, deployments by id."""

    name = serializers.CharField(max_length=200)
    instructions = serializers.CharField(
        required=False, allow_blank=True, help_text="Markdown, shown to every reviewer."
    )
    label_schemas = serializers.ListField(
        child=serializers.CharField(), help_text="Label schema names, in the order asked."
    )
    deployments = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of the deployments whose turns it holds."
    )
    assigned_users = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Usernames."
    )
    assigned_groups = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Group names."
    )
    reviewers_per_item = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REVIEWERS_PER_ITEM,
        help_text="Fixed once the session has items.",
    )
    due_at = serializers.DateTimeField(required=False, allow_null=True)
    state = serializers.ChoiceField(choices=SessionState.choices, required=False)
    saved_filter = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        allow_null=True,
        help_text="The requests page's query parameters: turns that match them and come later "
        "are added as they arrive (null: none).",
    )

    class Meta:
        ref_name = "ReviewSessionRequest"


class ReviewerProgressSerializer(serializers.Serializer):
    reviewer = serializers.CharField()
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()

    class Meta:
        ref_name = "ReviewerProgress"


class ProgressSerializer(serializers.Serializer):
    items = serializers.IntegerField()
    items_done = serializers.IntegerField(help_text="Items with all the reviewers they need.")
    labels_done = serializers.IntegerField()
    labels_needed = serializers.IntegerField(help_text="Items × reviewers per item.")
    percent = serializers.IntegerField()
    mine_done = serializers.IntegerField()
    mine_skipped = serializers.IntegerField()
    mine_available = serializers.IntegerField(
        help_text="Items that still need a reviewer and that you have not touched."
    )
    reviewers = ReviewerProgressSerializer(many=True)

    class Meta:
        ref_name = "ReviewSessionProgress"


class ReviewSessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    instructions = serializers.CharField()
    label_schemas = serializers.ListField(child=serializers.CharField())
    deployments = serializers.ListField(child=serializers.IntegerField())
    assigned_users = serializers.ListField(child=serializers.CharField())
    assigned_groups = serializers.ListField(child=serializers.CharField())
    reviewers_per_item = serializers.IntegerField()
    due_at = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(choices=SessionState.choices)
    saved_filter = serializers.DictField(child=serializers.CharField(), allow_null=True)
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    progress = ProgressSerializer()

    class Meta:
        ref_name = "ReviewSession"


def session_data(session: ReviewSession, progress: Progress) -> dict:
    """The session as ReviewSessionSerializer describes it (prefetch its related rows)."""
    return {
        "id": session.pk,
        "name": session.name,
        "instructions": session.instructions,
        "label_schemas": [link.schema.name for link in session.schema_links.all()],
        "deployments": sorted(d.pk for d in session.deployments.all()),
        "assigned_users": sorted(u.get_username() for u in session.assigned_users.all()),
        "assigned_groups": sorted(g.name for g in session.assigned_groups.all()),
        "reviewers_per_item": session.reviewers_per_item,
        "due_at": session.due_at,
        "state": session.state,
        "saved_filter": session.saved_filter,
        "created_by": session.created_by.get_username() if session.created_by else None,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "progress": {
            "items": progress.items,
            "items_done": progress.items_done,
            "labels_done": progress.labels_done,
            "labels_needed": progress.labels_needed,
            "percent": progress.percent,
            "mine_done": progress.mine_done,
            "mine_skipped": progress.mine_skipped,
            "mine_available": progress.mine_available,
            "reviewers": [
                {"reviewer": r.reviewer, "done": r.done, "skipped": r.skipped}
                for r in progress.reviewers
            ],
        },
    }


# --- Items ---------------------------------------------------------------------------------------


class ItemsAddSerializer(ClosedSerializer):
    """Exactly one of `request_ids` and `filters`."""

    request_ids = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="The turns' request ids."
    )
    filters = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="The requests page's query parameters: every turn that matches.",
    )

    class Meta:
        ref_name = "ReviewItemsAddRequest"

    def validate(self, attrs: dict) -> dict:
        if len(attrs) != 1:
            raise serializers.ValidationError("Send exactly one of request_ids and filters.")
        return attrs


class ItemsAddedSerializer(serializers.Serializer):
    added = serializers.IntegerField(help_text="Turns added now (those already in are not).")
    items = serializers.IntegerField(help_text="The session's items after adding.")

    class Meta:
        ref_name = "ReviewItemsAdded"


class ReviewItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    request_id = serializers.CharField()
    deployment = serializers.IntegerField()
    done_count = serializers.IntegerField(help_text="Reviewers who labelled it.")
    state = serializers.ChoiceField(
        choices=ITEM_STATES,
        help_text="For you: done (you labelled it), claimed (you hold it), skipped, open (it "
        "still needs a reviewer), full (it has its reviewers without you).",
    )
    lease_until = serializers.DateTimeField(
        allow_null=True, help_text="Until when your claim holds; null when you hold none."
    )
    settled = serializers.BooleanField(help_text="An admin gave the final label.")
    added_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ReviewItem"


class ReviewItemWorkSerializer(ReviewItemSerializer):
    question = serializers.CharField(help_text="The turn's user message.")
    answer = serializers.CharField(help_text="The agent's answer (empty if the turn failed).")
    error = serializers.CharField(help_text="Why the turn failed; empty if it did not.")

    class Meta:
        ref_name = "ReviewItemWork"


class ItemLabelSerializer(serializers.Serializer):
    reviewer = serializers.CharField()
    rating = RatingOutputSerializer()

    class Meta:
        ref_name = "ReviewItemLabel"


class ReviewItemDetailSerializer(ReviewItemWorkSerializer):
    labels = ItemLabelSerializer(
        many=True, help_text="Yours for a reviewer; every reviewer's for an admin."
    )
    consensus = RatingOutputSerializer(
        allow_null=True, help_text="The admin's final label (admins only; else null)."
    )

    class Meta:
        ref_name = "ReviewItemDetail"


def item_data(item: ReviewItem) -> dict:
    """An item of `session_items` (annotated) as ReviewItemSerializer describes it."""
    return {
        "id": item.pk,
        "request_id": item.request_id,
        "deployment": item.deployment_id,
        "done_count": item.done_count,
        "state": item.my_state,
        "lease_until": item.my_lease_until,
        "settled": item.consensus_id is not None,
        "added_at": item.added_at,
    }


def item_work_data(item: ReviewItem, place: ItemPlace) -> dict:
    """The item (with its turn) as ReviewItemWorkSerializer describes it, for one user."""
    return {
        "id": item.pk,
        "request_id": item.turn.databricks_request_id,
        "deployment": item.turn.deployment_id,
        "done_count": item.done_count,
        "state": place.state,
        "lease_until": place.lease_until,
        "settled": item.consensus_id is not None,
        "added_at": item.added_at,
        "question": item.turn.request,
        "answer": item.turn.response,
        "error": item.turn.error,
    }


def rating_data(rating: Rating | None) -> dict | None:
    return None if rating is None else RatingOutputSerializer(rating).data


def labels_data(labels: list[tuple[str, Rating]]) -> list[dict]:
    return [{"reviewer": who, "rating": rating_data(rating)} for who, rating in labels]


@extend_schema_field(TextAssessmentSerializer)
class TextAssessmentField(DepthLimitedJSONField):
    """One text assessment, taken as JSON and checked whole by feedback.validation against the
    session's label schemas (errors name the exact place)."""


class LabelInputSerializer(ClosedSerializer):
    """Your label: the answers to the session's label schemas (feedback ones in `ratings`,
    expectations in `expectations`), and documents rated if you like."""

    text_assessment = TextAssessmentField()
    retrieval_assessments = RetrievalAssessmentsField(required=False)

    class Meta:
        ref_name = "ReviewLabelRequest"


class SettleInputSerializer(ClosedSerializer):
    """The final answers to the session's label schemas."""

    text_assessment = TextAssessmentField()

    class Meta:
        ref_name = "ReviewSettleRequest"


class SkipInputSerializer(ClosedSerializer):
    """Why you give the item back, if you like."""

    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)

    class Meta:
        ref_name = "ReviewSkipRequest"


# --- Agreement -----------------------------------------------------------------------------------


class SchemaAgreementSerializer(serializers.Serializer):
    label_schema = serializers.CharField()
    title = serializers.CharField()
    level = serializers.ChoiceField(choices=["nominal", "interval"])
    items = serializers.IntegerField(help_text="Items with two or more labels of it.")
    reviewers = serializers.IntegerField()
    labels = serializers.IntegerField(help_text="Labels on those items.")
    figures = AgreementFigureSerializer(many=True)

    class Meta:
        ref_name = "ReviewSessionSchemaAgreement"


class SessionAgreementSerializer(serializers.Serializer):
    label_schemas = SchemaAgreementSerializer(
        many=True, help_text="Each feedback label schema with a level, in the session's order."
    )

    class Meta:
        ref_name = "ReviewSessionAgreement"


def agreement_data(found: list[SchemaAgreement]) -> dict:
    return {
        "label_schemas": [
            {
                "label_schema": s.schema.name,
                "title": s.schema.title,
                "level": s.agreement.level,
                "items": s.agreement.items,
                "reviewers": s.agreement.reviewers,
                "labels": s.agreement.labels,
                "figures": agreement_figures(s.agreement),
            }
            for s in found
        ]
    }


class DisagreementSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    request_id = serializers.CharField()
    label_schemas = serializers.ListField(
        child=serializers.CharField(),
        help_text="The label schemas its reviewers answered differently.",
    )
    labels = ItemLabelSerializer(many=True)
    consensus = RatingOutputSerializer(
        allow_null=True, help_text="The admin's final label, if given."
    )

    class Meta:
        ref_name = "ReviewDisagreement"

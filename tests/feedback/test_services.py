"""Saving ratings: validation first, then the rating and its delivery in one transaction."""

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from feedback import label_schema_services, services
from feedback.models import Delivery, LabelSchema, Rating
from tests.feedback.conftest import chat_turn, label_schemas, retriever_span_id

pytestmark = pytest.mark.django_db

THUMBS_DOWN = [{"ratings": {"answer_correct": {"value": "negative"}}}]


def test_a_rating_is_saved_with_its_delivery_and_enqueued_after_commit(
    turn, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        rating = services.rating_create(
            turn=turn,
            reviewer=reviewer,
            text_assessments=[
                {
                    "ratings": {"answer_correct": {"value": "negative"}},
                    "free_text_comment": "Misses the point",
                    "suggested_output": "MLflow tracing records each step.",
                }
            ],
        )
    assert rating.source_id == reviewer.email
    assert rating.source_type == "human"
    assert rating.text_assessment == {
        "ratings": {"answer_correct": {"value": "negative"}},
        "free_text_comment": "Misses the point",
        "suggested_output": "MLflow tracing records each step.",
    }
    delivery = Delivery.objects.get(rating=rating)
    assert delivery.status == "pending" and delivery.sink == "databricks_feedback"
    assert len(callbacks) == 1  # the task is enqueued only once the rows are committed


def test_a_document_rating_needs_a_real_document(turn, reviewer):
    span_id = retriever_span_id(turn)
    ok = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        retrieval_assessments=[
            {
                "position": 2,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ],
    )
    assert ok.retrieval_assessments[0]["step_id"] == span_id
    for bad, message in [
        ({"position": 3, "step_id": span_id}, "is not one of the 3 document(s)"),
        ({"position": 0, "step_id": "0123456789abcdef"}, "is not a retriever span"),
        ({"position": "0", "step_id": span_id}, "whole number"),
    ]:
        bad["ratings"] = {"chunk_relevance": {"value": "positive"}}
        with pytest.raises(ValidationError) as caught:
            services.rating_create(turn=turn, reviewer=reviewer, retrieval_assessments=[bad])
        assert message in str(caught.value)
    assert Rating.objects.count() == 1


def test_a_document_rating_is_checked_against_the_outline_not_the_trace(turn, reviewer):
    """A trace may be tens of MB: the rating of one document reads the turn's stored outline,
    which names each retriever span's documents. An outline of the version before that is
    made again once, from the trace, and kept."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agents.models import RequestLog
    from agents.selectors import trace_normalized_or_raise, trace_outlines_forget
    from agents.trace_outline import OUTLINE_VERSION

    span_id = retriever_span_id(turn)
    stored = RequestLog.objects.get(pk=turn.pk)
    assert stored.trace_outline["version"] == OUTLINE_VERSION
    older = {k: v for k, v in stored.trace_outline.items() if k != "documents"}
    RequestLog.objects.filter(pk=turn.pk).update(trace_outline={**older, "version": 1})

    def reads_the_trace(queries: list[str]) -> bool:
        return any(re.search(r'"agents_requestlog"\."trace"(?! IS NOT NULL)', q) for q in queries)

    def rate(position: int) -> list[str]:
        trace_outlines_forget()  # as a process that has read neither yet
        trace_normalized_or_raise.cache_clear()
        document = {"position": position, "step_id": span_id}
        document["ratings"] = {"chunk_relevance": {"value": "positive"}}
        with CaptureQueriesContext(connection) as queries:
            services.rating_create(turn=turn, reviewer=reviewer, retrieval_assessments=[document])
        return [query["sql"] for query in queries]

    first = rate(0)  # the old outline: made again from the trace
    assert reads_the_trace(first)
    assert RequestLog.objects.get(pk=turn.pk).trace_outline["documents"]
    later = rate(1)
    assert not reads_the_trace(later)
    with pytest.raises(ValidationError, match="is not one of the 3 document"):
        rate(3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ([{"ratings": {"helpful": {"value": "positive"}}}], "no such question"),
        ([{"ratings": {"answer_correct": {"value": "yes"}}}], '"positive" or "negative"'),
        ([{"ratings": {"answer_correct": "positive"}}], 'must be an object with a "value"'),
        ([{"ratings": {}}, {"ratings": {}}], "one text assessment"),
        ([{"free_text_comment": 5}], "must be a string"),
        ([{"ratings": {}}], "This rating is empty"),
    ],
)
def test_invalid_ratings_are_refused_and_nothing_is_saved(turn, reviewer, text, message):
    with pytest.raises(ValidationError) as caught:
        services.rating_create(turn=turn, reviewer=reviewer, text_assessments=text)
    assert message in str(caught.value)
    assert not Rating.objects.exists() and not Delivery.objects.exists()


def test_a_label_schema_of_each_kind_checks_its_values(turn, reviewer):
    label_schemas(
        turn.deployment,
        {"name": "tone", "input_type": "categorical", "options": ["formal", "casual"]},
        {"name": "score", "input_type": "numeric", "min_value": 1, "max_value": 5},
        {"name": "missing", "input_type": "text"},
    )
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[
            {
                "ratings": {
                    "tone": {"value": "casual"},
                    "score": {"value": 4},
                    "missing": {"value": "A link"},
                }
            }
        ],
    )
    assert rating.text_assessment["ratings"]["score"] == {"value": "4"}
    for ratings, message in [
        ({"tone": {"value": "rude"}}, "must be one of 'formal', 'casual'"),
        ({"score": {"value": 9}}, "between 1 and 5"),
        ({"score": {"value": "many"}}, "must be a number"),
        ({"answer_correct": {"value": "positive"}}, "no such question"),  # replaced by these
    ]:
        with pytest.raises(ValidationError) as caught:
            services.rating_create(
                turn=turn, reviewer=reviewer, text_assessments=[{"ratings": ratings}]
            )
        assert message in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"input_type": "categorical", "options": ["only one"]}, "options"),
        ({"input_type": "categorical_list", "options": ["a", "a"]}, "options"),
        ({"input_type": "numeric", "min_value": 5, "max_value": 1}, "max_value"),
        ({"input_type": "numeric", "min_value": 1, "max_value": 5, "step": 0}, "step"),
        ({"input_type": "numeric", "min_value": 1, "max_value": 5, "step": 5}, "step"),
        ({"input_type": "thumbs", "options": ["a", "b"]}, "options"),
        ({"input_type": "thumbs", "step": 1}, "min_value"),
        ({"input_type": "categorical", "options": ["a", "b"], "max_length": 9}, "max_length"),
        ({"input_type": "text", "max_count": 3}, "max_count"),
        ({"input_type": "thumbs", "name": "Bad Name"}, "name"),
        ({"input_type": "thumbs", "name": "chunk_relevance"}, "name"),
        ({"input_type": "text", "name": "expected_response"}, "name"),  # a feedback: no
        ({"input_type": "thumbs", "kind": "judgement"}, "kind"),
    ],
)
def test_a_label_schema_is_validated_when_an_admin_defines_it(fields, field):
    before = set(LabelSchema.objects.values_list("name", flat=True))
    with pytest.raises(ValidationError) as caught:
        label_schema_services.label_schema_save(data={"name": "q", "title": "Q?", **fields})
    assert field in caught.value.message_dict
    assert set(LabelSchema.objects.values_list("name", flat=True)) == before


def test_changing_a_rating_keeps_history_and_the_newest_counts(turn, reviewer):
    first = services.rating_create(turn=turn, reviewer=reviewer, text_assessments=THUMBS_DOWN)
    span_id = retriever_span_id(turn)
    second = services.rating_change(
        turn=turn,
        reviewer=reviewer,
        document={
            "step_id": span_id,
            "position": 0,
            "ratings": {"chunk_relevance": {"value": "positive"}},
        },
    )
    third = services.rating_change(
        turn=turn,
        reviewer=reviewer,
        text_assessment={"ratings": {"answer_correct": {"value": "positive"}}},
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert not first.is_current and not second.is_current and third.is_current
    # The newest version holds every part: the changed answer and the earlier document rating.
    assert third.text_assessment == {"ratings": {"answer_correct": {"value": "positive"}}}
    assert third.retrieval_assessments[0]["position"] == 0
    assert Delivery.objects.filter(rating__request=turn).count() == 3  # each change forwarded


def test_only_reviewers_rate_and_only_answers_that_exist(demo_deployment, stakeholder, reviewer):
    turn = chat_turn(demo_deployment, stakeholder)
    with pytest.raises(PermissionDenied):
        services.rating_create(turn=turn, reviewer=stakeholder, text_assessments=THUMBS_DOWN)
    turn.error = "The agent answered with an error (HTTP 500)."
    turn.save(update_fields=["error"])
    with pytest.raises(ValidationError, match="no answer to rate"):
        services.rating_create(turn=turn, reviewer=reviewer, text_assessments=THUMBS_DOWN)
    assert not Rating.objects.exists()


def test_a_deployment_without_a_sink_keeps_ratings_without_a_delivery(turn, reviewer):
    turn.deployment.feedback_sink = "none"
    turn.deployment.save(update_fields=["feedback_sink"])
    rating = services.rating_create(turn=turn, reviewer=reviewer, text_assessments=THUMBS_DOWN)
    assert rating.pk and not Delivery.objects.exists()


def test_a_databricks_deployment_left_on_the_default_sink_forwards_its_ratings(turn, reviewer):
    turn.deployment.feedback_sink = "auto"
    turn.deployment.save(update_fields=["feedback_sink"])
    rating = services.rating_create(turn=turn, reviewer=reviewer, text_assessments=THUMBS_DOWN)
    delivery = Delivery.objects.get(rating=rating)
    assert delivery.sink == "databricks_feedback"


def test_odd_inputs_are_refused_or_kept_exactly(turn, reviewer):
    label_schemas(
        turn.deployment,
        {"name": "score", "input_type": "numeric", "min_value": 0, "max_value": 10_000_000},
    )
    for bad in (float("nan"), float("inf"), "1_000", "ten", True):
        with pytest.raises(ValidationError, match="must be a number"):
            services.rating_create(
                turn=turn,
                reviewer=reviewer,
                text_assessments=[{"ratings": {"score": {"value": bad}}}],
            )
    rating = services.rating_create(
        turn=turn, reviewer=reviewer, text_assessments=[{"ratings": {"score": {"value": 1234567}}}]
    )
    assert rating.text_assessment["ratings"]["score"] == {"value": "1234567"}
    span_id = retriever_span_id(turn)
    too_many = [{"position": 0, "step_id": span_id}] * 1001
    with pytest.raises(ValidationError, match="at most 1,000"):
        services.rating_create(turn=turn, reviewer=reviewer, retrieval_assessments=too_many)
    many_bad = [{"position": 0, "step_id": "ffffffffffffffff"}] * 500
    with pytest.raises(ValidationError) as caught:
        services.rating_create(turn=turn, reviewer=reviewer, retrieval_assessments=many_bad)
    assert len(caught.value.messages) <= 21 and "and 480 more" in caught.value.messages[-1]


def test_a_step_id_may_be_given_as_mlflow_writes_it(turn, reviewer):
    import base64

    span_id = retriever_span_id(turn)
    as_base64 = base64.b64encode(bytes.fromhex(span_id)).decode()
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        retrieval_assessments=[
            {
                "position": 0,
                "step_id": as_base64,
                "ratings": {"chunk_relevance": {"value": "positive", "rationale": "On topic"}},
            },
        ],
    )
    assert rating.retrieval_assessments == [
        {
            "position": 0,
            "step_id": span_id,
            "ratings": {"chunk_relevance": {"value": "positive", "rationale": "On topic"}},
        }
    ]

"""The MLflow assessments sink against a real `mlflow server` (tests/support/mlflow_server.py):
a rating of a turn whose trace the server has becomes assessments on that trace, a changed
rating overrides them, and a trace the server does not have fails the delivery readably.

The delivery runs in this process (`delivery_run`), with real HTTP through feedback/transport.py.
"""

import pytest

from agents.models import RequestLog
from agents.selectors import trace_normalized
from feedback import delivery as delivery_service
from feedback import services
from feedback.models import Delivery, DeliveryStatus
from tests.support import mlflow_server as server_support
from tests.support.mlflow_traces import make_trace as make_serving_trace
from tests.support.turns import logged_turn as support_turn

pytestmark = pytest.mark.integration

COMMENT = "It says spans are optional; the docs say every step is one."
SUGGESTED = "MLflow tracing records every step of the agent as a span, with inputs and outputs."


@pytest.fixture(autouse=True)
def quiet_mlflow_client(monkeypatch):
    """The MlflowClient this process uses to read assessments back sends no telemetry."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")


@pytest.fixture
def mlflow_deployment(deployment_factory, mlflow_server):
    return deployment_factory(
        feedback_sink="mlflow_assessments", feedback_endpoint=mlflow_server.url
    )


def logged_turn(deployment, user, trace: dict) -> RequestLog:
    """A successful turn carrying this trace, as chat_turn saves it."""
    return support_turn(
        deployment,
        user,
        request=server_support.TRACE_QUESTION,
        response=server_support.TRACE_ANSWER,
        trace=trace,
    )


@pytest.fixture
def server_turn(mlflow_deployment, mlflow_server, reviewer):
    """A turn whose trace was logged to the MLflow server by the MLflow library."""
    return logged_turn(mlflow_deployment, reviewer, mlflow_server.make_trace())


def retriever_span_id(turn: RequestLog) -> str:
    trace = trace_normalized(turn.databricks_request_id)
    return next(s.span_id for s in trace.iter_spans() if s.documents is not None)


def thumbs_down_with_everything(turn, reviewer):
    return services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[
            {
                "ratings": {"answer_correct": {"value": "negative"}},
                "free_text_comment": COMMENT,
                "suggested_output": SUGGESTED,
            }
        ],
        retrieval_assessments=[
            {
                "position": 1,
                "step_id": retriever_span_id(turn),
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ],
    )


def deliver(rating) -> Delivery:
    delivery = Delivery.objects.get(rating=rating)
    delivery_service.delivery_run(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def by_name(assessments, name: str) -> list:
    return sorted(
        (a for a in assessments if a.name == name),
        key=lambda a: (a.create_time_ms, a.assessment_id),
    )


def test_a_rating_becomes_assessments_on_the_trace(server_turn, reviewer, mlflow_server):
    span_id = retriever_span_id(server_turn)
    trace_id = server_turn.trace["info"]["trace_id"]

    delivery = deliver(thumbs_down_with_everything(server_turn, reviewer))

    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 1, "")
    assessments = mlflow_server.trace(trace_id).info.assessments
    assert len(assessments) == 3
    [correct] = by_name(assessments, "answer_correct")
    assert correct.feedback.value is False
    assert (correct.source.source_type, correct.source.source_id) == ("HUMAN", reviewer.email)
    assert correct.rationale == COMMENT
    assert correct.metadata["request_id"] == server_turn.databricks_request_id
    assert correct.valid is not False
    [expected] = by_name(assessments, "expected_response")
    assert expected.expectation.value == SUGGESTED
    assert expected.source.source_id == reviewer.email
    [chunk] = by_name(assessments, "chunk_relevance")
    assert (chunk.feedback.value, chunk.span_id, chunk.metadata["position"]) == (
        False,
        span_id,
        "1",
    )
    # What the sink keeps, for the next version of the rating to override.
    ids = delivery.sink_state["assessment_ids"]
    assert ids == {
        "q:answer_correct": correct.assessment_id,
        "expected_response": expected.assessment_id,
        f"doc:{span_id}:1": chunk.assessment_id,
    }


def test_a_changed_rating_overrides_the_previous_assessments(server_turn, reviewer, mlflow_server):
    trace_id = server_turn.trace["info"]["trace_id"]
    first = deliver(thumbs_down_with_everything(server_turn, reviewer))
    assert first.status == DeliveryStatus.SENT

    changed = services.rating_change(
        turn=server_turn,
        reviewer=reviewer,
        text_assessment={"ratings": {"answer_correct": {"value": "positive"}}},
    )
    second = deliver(changed)

    assert (second.status, second.attempts) == (DeliveryStatus.SENT, 1)
    assessments = mlflow_server.trace(trace_id).info.assessments
    old, new = by_name(assessments, "answer_correct")
    assert old.assessment_id == first.sink_state["assessment_ids"]["q:answer_correct"]
    assert (old.feedback.value, old.valid) == (False, False)
    assert (new.feedback.value, new.overrides, new.valid) == (True, old.assessment_id, True)
    assert new.rationale is None  # the new version has no comment
    # The document's rating was kept in the new version: posted again, overriding the old one.
    old_chunk, new_chunk = by_name(assessments, "chunk_relevance")
    assert old_chunk.valid is False
    assert (new_chunk.overrides, new_chunk.valid) == (old_chunk.assessment_id, True)
    assert (new_chunk.feedback.value, new_chunk.metadata["position"]) == (False, "1")


def test_a_trace_the_server_does_not_have_fails_the_delivery(
    mlflow_deployment, mlflow_server, reviewer
):
    # A real trace made by MLflow's serving path (as a Databricks endpoint returns it), which
    # was never logged to this tracking server.
    trace = make_serving_trace("rag")
    trace_id = trace["info"]["trace_id"]
    turn = logged_turn(mlflow_deployment, reviewer, trace)
    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": "negative"}}}],
    )

    delivery = deliver(rating)

    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert delivery.last_error.startswith("HTTP 404: "), delivery.last_error
    assert "RESOURCE_DOES_NOT_EXIST" in delivery.last_error
    assert f"Trace with ID '{trace_id}' not found" in delivery.last_error
    assert delivery.sink_state.get("assessment_ids", {}) == {}
    assert delivery.attempt_rows.get().status_code == 404


def test_label_schemas_of_every_shape_reach_the_trace(server_turn, reviewer, mlflow_server):
    from tests.feedback.conftest import label_schemas

    label_schemas(
        server_turn.deployment,
        {"name": "issues", "input_type": "categorical_list", "options": ["vague", "wrong"]},
        {"name": "score", "input_type": "numeric", "min_value": 1, "max_value": 5, "step": 0.5},
        {"name": "facts", "kind": "expectation", "input_type": "text_list"},
    )
    rating = services.rating_create(
        turn=server_turn,
        reviewer=reviewer,
        text_assessments=[
            {
                "ratings": {"issues": {"value": ["wrong", "vague"]}, "score": {"value": 2.5}},
                "expectations": {"facts": {"value": ["Spans nest", "Each step is a span"]}},
            }
        ],
    )

    delivery = deliver(rating)

    assert (delivery.status, delivery.last_error) == (DeliveryStatus.SENT, "")
    assessments = mlflow_server.trace(server_turn.trace["info"]["trace_id"]).info.assessments
    [issues] = by_name(assessments, "issues")
    assert issues.feedback.value == ["vague", "wrong"]
    [score] = by_name(assessments, "score")
    assert score.feedback.value == 2.5
    [facts] = by_name(assessments, "facts")
    assert facts.expectation.value == ["Spans nest", "Each step is a span"]
    assert facts.feedback is None and facts.source.source_id == reviewer.email
    assert set(delivery.sink_state["assessment_ids"]) == {"q:issues", "q:score", "e:facts"}


def test_an_evaluators_score_reaches_the_trace_with_its_source_type(server_turn, mlflow_server):
    """An evaluation run's scores are delivered like ratings: a judge's as LLM_JUDGE, a code
    evaluator's as CODE, each with its value and rationale."""
    trace_id = server_turn.trace["info"]["trace_id"]
    why = "3 of 4 expected terms are in the answer."
    judged = services.evaluator_rating_create(
        turn=server_turn, source_type="LLM_JUDGE", source_id="run:e1/judged", name="judged",
        value=0.75, rationale=why,
    )  # fmt: skip
    coded = services.evaluator_rating_create(
        turn=server_turn, source_type="CODE", source_id="run:e1/contains", name="contains",
        value=True, rationale="",
    )  # fmt: skip
    assert deliver(judged).status == DeliveryStatus.SENT
    assert deliver(coded).status == DeliveryStatus.SENT
    assessments = mlflow_server.trace(trace_id).info.assessments
    [judge] = by_name(assessments, "judged")
    assert (judge.source.source_type, judge.source.source_id) == ("LLM_JUDGE", "run:e1/judged")
    assert (judge.feedback.value, judge.rationale) == (0.75, why)
    [code] = by_name(assessments, "contains")
    assert (code.source.source_type, code.feedback.value) == ("CODE", True)

"""Fixtures for ratings: real turns from the real demo agent, and a fake at the one seam
(feedback.transport.post_json) for unit tests of delivery."""

import pytest

from agents.conversations import conversation_create
from agents.models import Deployment, RequestLog
from feedback import label_schema_services
from feedback.models import LabelSchema
from feedback.transport import SinkResponse
from tests.support import turns as turn_support


def chat_turn(deployment, user, message="What is MLflow tracing?", **inputs) -> RequestLog:
    conversation = conversation_create(deployment=deployment, user=user)
    turn = turn_support.chat_turn(
        deployment=deployment,
        user=user,
        conversation=conversation,
        message=message,
        custom_inputs=inputs,
    )
    assert turn.error == "", turn.error_detail
    return turn


def label_schemas(deployment: Deployment, *schemas: dict) -> list[LabelSchema]:
    """Create these label schemas (as an admin does) and make them the deployment's set, in
    order. Names differ from the built-in schemas the migration makes: a transactional test
    earlier in the run may have flushed those away, so no test counts on them."""
    for fields in schemas:
        label_schema_services.label_schema_save(
            data={"title": fields["name"].title() + "?", **fields}
        )
    names = [fields["name"] for fields in schemas]
    return label_schema_services.deployment_label_schemas_set(deployment=deployment, names=names)


def retriever_span_id(turn: RequestLog) -> str:
    from agents.selectors import trace_normalized

    trace = trace_normalized(turn.databricks_request_id)
    return next(s.span_id for s in trace.iter_spans() if s.documents is not None)


@pytest.fixture
def turn(demo_deployment, reviewer):
    """A real answer of the demo agent (3 documents retrieved), asked by the reviewer."""
    return chat_turn(demo_deployment, reviewer, top_k=3)


class FakeSink:
    """Stands in for feedback.transport.post_json: records each post, answers from a script."""

    def __init__(self):
        self.posts: list[dict] = []
        self.answers: list = []  # SinkResponse or Exception, used in order; then 200

    def __call__(self, url, body, *, headers, timeout_s):
        self.posts.append({"url": url, "body": body, "headers": headers})
        answer = self.answers.pop(0) if self.answers else SinkResponse(200, '{"ok": 1}', None)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def fake_sink(monkeypatch):
    sink = FakeSink()
    monkeypatch.setattr("feedback.transport.post_json", sink)
    return sink

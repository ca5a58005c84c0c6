"""The request page and the trace tree fragments, on traces the demo agent made with MLflow."""

import pytest

from agents.conversations import conversation_create
from agents.models import RequestLog
from tests.support.turns import chat_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def turn(demo_deployment, stakeholder):
    conversation = conversation_create(deployment=demo_deployment, user=stakeholder)
    return chat_turn(
        deployment=demo_deployment,
        user=stakeholder,
        conversation=conversation,
        message="What is MLflow tracing?",
        custom_inputs={"top_k": 2},
    )


def spans_by_type(turn):
    from agents.traces import normalize_trace

    return {span.span_type: span for span in normalize_trace(turn.trace).iter_spans()}


def test_the_request_page_shows_question_answer_and_trace_toggle(client, stakeholder, turn):
    client.force_login(stakeholder)
    html = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert "What is MLflow tracing?" in html
    assert "MLflow Tracing records every step" in html
    assert f"/requests/{turn.databricks_request_id}/trace/" in html


def test_the_tree_shows_root_and_children_with_durations(client, stakeholder, turn):
    client.force_login(stakeholder)
    html = client.get(f"/requests/{turn.databricks_request_id}/trace/").content.decode()
    assert "demo_rag_agent" in html and "retrieve_docs" in html and "demo_llm" in html
    assert "3 spans" in html
    assert " ms</span>" in html
    assert "margin-left:" in html  # the waterfall bars


def test_a_retriever_span_shows_its_documents(client, stakeholder, turn):
    retriever = spans_by_type(turn)["RETRIEVER"]
    client.force_login(stakeholder)
    url = f"/requests/{turn.databricks_request_id}/spans/{retriever.span_id}/"
    html = client.get(url).content.decode()
    assert "Documents (2)" in html
    assert 'data-position="0"' in html and 'data-position="1"' in html
    for document in retriever.documents:
        assert document.chunk_id in html


def test_a_span_shows_inputs_outputs_and_attributes(client, stakeholder, turn):
    llm = spans_by_type(turn)["CHAT_MODEL"]
    client.force_login(stakeholder)
    html = client.get(
        f"/requests/{turn.databricks_request_id}/spans/{llm.span_id}/"
    ).content.decode()
    assert "Inputs" in html and "Outputs" in html and "Attributes" in html
    assert "mlflow.chat.tokenUsage" in html


def test_children_load_on_demand(client, stakeholder, turn):
    root = spans_by_type(turn)["AGENT"]
    client.force_login(stakeholder)
    html = client.get(
        f"/requests/{turn.databricks_request_id}/spans/{root.span_id}/children/"
    ).content.decode()
    assert "retrieve_docs" in html and "demo_llm" in html
    assert "demo_rag_agent" not in html


def test_unknown_spans_and_other_peoples_requests_are_404(
    client, stakeholder, reviewer, turn, django_user_model
):
    from django.contrib.auth.models import Group

    client.force_login(stakeholder)
    base = f"/requests/{turn.databricks_request_id}"
    assert client.get(f"{base}/spans/ffffffffffffffff/").status_code == 404
    assert client.get("/requests/no-such-request/").status_code == 404
    other = django_user_model.objects.create_user("someone")
    other.groups.add(Group.objects.get(name="stakeholder"))
    client.force_login(other)
    assert client.get(f"{base}/").status_code == 404
    assert client.get(f"{base}/trace/").status_code == 404
    client.force_login(reviewer)
    assert client.get(f"{base}/trace/").status_code == 200


def test_an_answer_without_a_trace_says_so(client, stakeholder, turn):
    RequestLog.objects.filter(pk=turn.pk).update(trace=None)
    client.force_login(stakeholder)
    html = client.get(f"/requests/{turn.databricks_request_id}/").content.decode()
    assert "No trace returned." in html

"""The trace outline stored with each turn: the Trace tree opens from it without reading the
stored trace, and a span opened reads only itself, exactly as the whole normalized trace gives it.

Traces are the real MLflow ones: the demo agent's, the shared fixtures (several MLflow versions),
and ones MLflow makes here (tests/support/mlflow_traces.py).
"""

import base64
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import selectors
from agents.conversations import conversation_create
from agents.models import RequestLog
from agents.trace_outline import outline_of
from agents.traces import normalize_trace
from tests.support import SHARED_FIXTURES
from tests.support.mlflow_traces import make_traces
from tests.support.turns import chat_turn, logged_turn

pytestmark = pytest.mark.django_db
TRACES_DIR = SHARED_FIXTURES / "traces"
MADE = ("rag", "rag_custom_columns", "tool_calling", "error", "hostile", "wide:1300")
# The trace column selected whole, not a path inside it picked out by the database.
WHOLE_TRACE = re.compile(
    r'(?<!JSON_EXTRACT\()(?<!JSON_TYPE\()"agents_requestlog"\."trace"(?=,| FROM| AS)'
)


@pytest.fixture(scope="module")
def made() -> dict[str, dict]:
    return make_traces(*MADE)


@pytest.fixture
def demo_turn(demo_deployment, stakeholder) -> RequestLog:
    conversation = conversation_create(deployment=demo_deployment, user=stakeholder)
    turn = chat_turn(
        deployment=demo_deployment,
        user=stakeholder,
        conversation=conversation,
        message="What is MLflow tracing?",
        custom_inputs={"top_k": 2},
    )
    assert turn.error == "", turn.error_detail
    return turn


def reads_whole_trace(queries) -> list[str]:
    return [q["sql"] for q in queries if WHOLE_TRACE.search(q["sql"])]


def load(name: str) -> dict:
    return json.loads((TRACES_DIR / name).read_text())


def damaged_traces() -> dict[str, object]:
    """Real traces with the damage normalize_trace notes: an orphan, a parent cycle, spans
    without ids, a truncated attribute; and one stored as JSON text."""
    orphan = load("tool_calling.json")
    orphan["data"]["spans"][4]["parent_span_id"] = base64.b64encode(b"\x01" * 8).decode()
    cycle = load("tool_calling.json")
    spans = {span["name"]: span for span in cycle["data"]["spans"]}
    spans["flight_lookup_pipeline"]["parent_span_id"] = spans["search_flights"]["span_id"]
    no_ids = load("rag_simple.json")
    del no_ids["data"]["spans"][0]["span_id"]
    no_ids["data"]["spans"][2]["span_id"] = None
    broken = load("rag_simple.json")
    outputs = broken["data"]["spans"][1]["attributes"]
    outputs["mlflow.spanOutputs"] = outputs["mlflow.spanOutputs"][:50]
    as_text = json.dumps(load("tool_calling.response.json"))
    return {"orphan": orphan, "cycle": cycle, "no ids": no_ids, "broken": broken, "text": as_text}


def every_trace(made) -> dict[str, object]:
    fixtures = {str(p.relative_to(TRACES_DIR)): load(str(p.relative_to(TRACES_DIR))) for p in
                sorted(TRACES_DIR.rglob("*.json"))}  # fmt: skip
    return {**fixtures, **made, **damaged_traces()}


def stored_turn(deployment, user, trace) -> RequestLog:
    return logged_turn(deployment, user, trace=trace, trace_outline=outline_of(trace))


def test_a_chat_turn_is_saved_with_the_outline_of_its_trace(demo_turn):
    stored = RequestLog.objects.get(pk=demo_turn.pk)
    assert stored.trace_outline == outline_of(stored.trace)
    assert [row[3] for row in stored.trace_outline["spans"]] == [
        "demo_rag_agent",
        "retrieve_docs",
        "demo_llm",
    ]


def test_the_tree_opens_without_reading_the_stored_trace(client, stakeholder, demo_turn):
    client.force_login(stakeholder)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(f"/requests/{demo_turn.databricks_request_id}/trace/").content.decode()
    assert "demo_rag_agent" in html and "retrieve_docs" in html and "demo_llm" in html
    assert "3 spans" in html and "margin-left:" in html
    assert reads_whole_trace(queries) == []


def test_an_opened_span_is_read_alone_with_its_documents(client, stakeholder, demo_turn):
    retriever = next(
        s for s in normalize_trace(demo_turn.trace).iter_spans() if s.span_type == "RETRIEVER"
    )
    client.force_login(stakeholder)
    url = f"/requests/{demo_turn.databricks_request_id}/spans/{retriever.span_id}/"
    with CaptureQueriesContext(connection) as queries:
        html = client.get(url).content.decode()
    assert "Documents (2)" in html and 'data-position="1"' in html
    assert all(document.chunk_id in html for document in retriever.documents)
    assert reads_whole_trace(queries) == []


def test_every_span_read_alone_is_the_span_of_the_whole_normalized_trace(
    made, deployment_factory, reviewer
):
    deployment = deployment_factory()
    for name, raw in every_trace(made).items():
        turn = stored_turn(deployment, reviewer, raw)
        whole = normalize_trace(raw)
        outline = selectors.trace_outline_or_raise(turn.databricks_request_id)
        assert (outline.span_count, outline.problems) == (whole.span_count, whole.problems), name
        assert (outline.status, outline.duration_ms) == (whole.status, whole.duration_ms), name
        for span in whole.iter_spans():
            row = outline.find(span.span_id)
            assert [c.span_id for c in row.children] == [c.span_id for c in span.children], name
            assert (row.depth, row.offset_ms) == (span.depth, span.offset_ms), name
            alone = selectors.trace_span_or_raise(turn.databricks_request_id, span.span_id)
            assert alone.to_dict() == span.to_dict(), (name, span.name)


def test_a_turn_saved_before_outlines_opens_and_keeps_one(client, stakeholder, demo_turn):
    RequestLog.objects.filter(pk=demo_turn.pk).update(trace_outline=None)
    client.force_login(stakeholder)
    url = f"/requests/{demo_turn.databricks_request_id}/trace/"

    html = client.get(url).content.decode()

    assert "demo_rag_agent" in html and "3 spans" in html
    stored = RequestLog.objects.get(pk=demo_turn.pk)
    assert stored.trace_outline == outline_of(stored.trace)
    selectors.trace_outlines_forget()  # as another process would open it
    with CaptureQueriesContext(connection) as queries:
        assert "demo_llm" in client.get(url).content.decode()
    assert reads_whole_trace(queries) == []


def test_big_fan_outs_show_200_children_at_a_time_and_deep_levels_on_demand(
    made, client, reviewer, deployment_factory
):
    turn = stored_turn(deployment_factory(), reviewer, made["wide:1300"])
    root = normalize_trace(made["wide:1300"]).roots[0]
    client.force_login(reviewer)
    base = f"/requests/{turn.databricks_request_id}"
    with CaptureQueriesContext(connection) as queries:
        tree = client.get(f"{base}/trace/").content.decode()
        more = client.get(f"{base}/spans/{root.span_id}/children/?offset=200").content.decode()
    assert tree.count('class="span-row"') == 201 and "1300 spans" in tree
    assert f"/spans/{root.span_id}/children/?offset=200" in tree
    assert tree.count('hx-trigger="toggle once"') == 200  # each step's spans load when opened
    assert more.count('class="span-row"') == len(root.children) - 200
    assert root.children[-1].name in more and root.children[199].name not in more
    assert reads_whole_trace(queries) == []


def test_failed_spans_stay_red_in_the_tree(made, client, reviewer, deployment_factory):
    turn = stored_turn(deployment_factory(), reviewer, made["error"])
    client.force_login(reviewer)
    html = client.get(f"/requests/{turn.databricks_request_id}/trace/").content.decode()
    assert "span-node--error" in html and '<span class="badge badge--off">error</span>' in html


def test_unreadable_parts_are_shown_raw_with_a_note(client, reviewer, deployment_factory):
    raw = damaged_traces()["broken"]
    turn = stored_turn(deployment_factory(), reviewer, raw)
    span_id = normalize_trace(raw).roots[0].children[0].span_id
    client.force_login(reviewer)
    html = client.get(f"/requests/{turn.databricks_request_id}/spans/{span_id}/").text
    assert "Attribute &#x27;mlflow.spanOutputs&#x27; is not valid JSON; kept as text." in html
    assert "Raw span JSON" in html

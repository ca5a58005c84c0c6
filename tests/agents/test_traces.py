"""normalize_trace on every real trace shape, on damaged copies of them, and on fuzz.

Traces come from the shared fixtures (MLflow 2.19, 2.21.3, 3.1.0, 3.18 output) or are made here
by MLflow 3.17.2 itself (tests/support/mlflow_traces.py); damaged ones are real ones mutated.
The expected tree is read back from each raw span's own ids, with an independent decoder.
"""

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from agents.traces import NEST_LIMIT, NormalizedTrace, Span, normalize_trace
from tests.support import SHARED_FIXTURES
from tests.support.mlflow_traces import make_traces

TRACES_DIR = SHARED_FIXTURES / "traces"
FIXTURE_FILES = sorted(TRACES_DIR.rglob("*.json"))
MADE = ("rag", "rag_custom_columns", "tool_calling", "error")
SAFE_ID = re.compile(r"[0-9a-f]{16}|(missing|duplicate)-[0-9]+'*")


def load(name: str) -> dict:
    return json.loads((TRACES_DIR / name).read_text())


def raw_trace(document: dict) -> dict:
    """The trace itself: `*.response.json` replies carry it in `databricks_output.trace`."""
    return document["databricks_output"]["trace"] if "databricks_output" in document else document


def expected_hex(raw_id: Any) -> str | None:
    if raw_id in (None, ""):
        return None
    if raw_id.endswith("="):  # 3.x base64
        return base64.b64decode(raw_id).hex()
    return raw_id.lower().removeprefix("0x")  # 2.x "0x…" and 3.5 plain hex


def raw_ids(span: dict) -> tuple[Any, Any]:
    if "context" in span:  # 2.x
        return span["context"]["span_id"], span["parent_id"]
    return span["span_id"], span["parent_span_id"]


def by_name(trace: NormalizedTrace) -> dict[str, Span]:
    return {span.name: span for span in trace.iter_spans()}


@pytest.fixture(scope="module")
def made() -> dict[str, dict]:
    """Traces made by MLflow in a child process (its serving environment stays out of ours)."""
    return make_traces(*MADE, "deep:5000", "wide:2000")


def assert_matches_raw(trace: NormalizedTrace, raw: dict) -> None:
    """The tree, ids, times, statuses and types are those the raw spans describe."""
    raw_spans = raw["data"]["spans"]
    assert trace.problems == []
    assert trace.span_count == len(raw_spans) == len(list(trace.iter_spans()))
    [root] = trace.roots
    assert root.depth == 0 and root.parent_id is None
    for raw_span in raw_spans:
        span_id, parent_id = raw_ids(raw_span)
        span = trace.find(expected_hex(span_id))
        assert span is not None and trace.find(span_id) is span  # also found by the raw id
        assert len(span.span_id) == 16 and set(span.span_id) <= set("0123456789abcdef")
        assert span.parent_id == expected_hex(parent_id)
        assert span.span_type == json.loads(raw_span["attributes"]["mlflow.spanType"])
        code = raw_span["status"]["code"] if "status" in raw_span else raw_span["status_code"]
        assert span.status == code.removeprefix("STATUS_CODE_")
        assert span.duration_ms is not None and span.duration_ms >= 0
        assert span.offset_ms is not None and span.offset_ms >= 0
        assert span.problems == [] and span.raw is None
    for span in trace.iter_spans():
        starts = [child.start_ns for child in span.children]
        assert starts == sorted(starts)
        assert all(child.parent_id == span.span_id for child in span.children)
        assert all(child.depth == span.depth + 1 for child in span.children)
    assert trace.duration_ms == max(s.offset_ms + s.duration_ms for s in trace.iter_spans())
    assert json.loads(json.dumps(trace.to_dict(), allow_nan=False))["span_count"] == len(raw_spans)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(TRACES_DIR)))
def test_every_fixture_normalizes_to_the_tree_its_ids_describe(path: Path):
    document = json.loads(path.read_text())
    trace = normalize_trace(document)
    assert_matches_raw(trace, raw_trace(document))
    info = raw_trace(document)["info"]
    assert trace.trace_id == info.get("trace_id", info.get("request_id"))
    assert trace.request_id == info.get("client_request_id", info.get("request_id"))
    if "databricks_output" in document:  # the reply envelope or the trace inside: the same
        assert trace.request_id == document["databricks_output"]["databricks_request_id"]
        assert normalize_trace(raw_trace(document)).to_dict() == trace.to_dict()
    assert trace.schema_version == ("2" if "request_id" in info else "3")
    assert trace.status == "OK"


@pytest.mark.parametrize("name", MADE)
def test_traces_mlflow_makes_here_normalize_the_same_way(made, name):
    trace = normalize_trace(made[name])
    assert_matches_raw(trace, made[name])
    assert trace.request_id == made[name]["info"]["client_request_id"]


def test_rag_documents_keep_position_uri_and_chunk_id():
    trace = normalize_trace(load("rag_simple.json"))
    spans = by_name(trace)
    assert [s.name for s in trace.roots[0].children] == ["vector_search", "ChatDatabricks"]
    documents = spans["vector_search"].documents
    assert [(d.position, d.chunk_id) for d in documents] == [(0, "1"), (1, "7"), (2, "42")]
    assert documents[0].doc_uri == "https://docs.example.com/mlflow/tracing/overview.html"
    assert documents[0].page_content.startswith("MLflow Tracing captures the inputs")
    assert all(d.doc_uri_is_http and d.metadata == {} for d in documents)
    assert spans["ChatDatabricks"].documents is None
    assert spans["vector_search"].inputs == {
        "query": "How does MLflow Tracing show retrieved documents?",
        "num_results": 3,
    }
    assert spans["ChatDatabricks"].attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 470
    assert trace.token_usage == {"input_tokens": 412, "output_tokens": 58, "total_tokens": 470}
    assert trace.metadata["mlflow.trace.session"] == "session-rag-001"


def test_mlflow_made_documents_without_uri_or_with_other_schemes(made):
    documents = by_name(normalize_trace(made["rag"]))["vector_search"].documents
    assert [(d.doc_uri_is_http, d.chunk_id) for d in documents] == [
        (True, "7"),
        (False, "12"),  # dbfs:/… is shown, never linked
        (False, None),
    ]
    assert documents[2].doc_uri is None and documents[2].metadata == {"section": "faq"}


def test_the_last_retriever_schema_names_the_document_columns(made):
    trace = normalize_trace(made["rag_custom_columns"])
    [document] = by_name(trace)["docs_index"].documents
    assert document.doc_uri == "https://docs.example.com/schema.html"
    assert document.chunk_id == "d-1"
    assert document.metadata == {"title": "T"}


def test_documents_with_keys_at_the_top_level_and_no_metadata():
    raw = load("rag_simple.json")
    retriever = raw["data"]["spans"][1]
    outputs = json.loads(retriever["attributes"]["mlflow.spanOutputs"])
    for document in outputs:  # flatten what MLflow wrote: no `metadata`, keys at the top
        document.update(document.pop("metadata"))
    retriever["attributes"]["mlflow.spanOutputs"] = json.dumps(outputs)
    documents = by_name(normalize_trace(raw))["vector_search"].documents
    assert [(d.chunk_id, d.doc_uri_is_http) for d in documents] == [
        ("1", True),
        ("7", True),
        ("42", True),
    ]


def test_the_error_span_carries_its_exception():
    trace = normalize_trace(load("error_span.json"))
    spans = by_name(trace)
    failed, tool = spans["fetch_sales_context"], spans["run_sql_query"]
    assert (failed.status, tool.status, spans["fallback_llm"].status) == ("ERROR", "ERROR", "OK")
    assert tool.parent_id == failed.span_id and failed.parent_id == trace.roots[0].span_id
    assert failed.status_message.startswith("WarehouseQueryError: [TABLE_OR_VIEW_NOT_FOUND]")
    [event] = failed.events
    assert event.exception_type == "WarehouseQueryError"
    assert event.exception_message.startswith("[TABLE_OR_VIEW_NOT_FOUND]")
    assert event.stacktrace.startswith("Traceback (most recent call last)")
    assert failed.offset_ms <= event.offset_ms <= failed.offset_ms + failed.duration_ms
    assert trace.status == "OK"  # the agent recovered; the trace says so


def test_an_exception_raised_inside_an_mlflow_span(made):
    spans = by_name(normalize_trace(made["error"]))
    [event] = spans["run_sql_query"].events
    assert event.name == "exception" and event.exception_type == "WarehouseQueryError"
    assert "raise WarehouseQueryError" in event.stacktrace
    assert spans["fetch_sales_context"].status == "ERROR"


def test_tool_calling_nesting_and_custom_span_types(made):
    fixture = by_name(normalize_trace(load("tool_calling.json")))
    pipeline = fixture["flight_lookup_pipeline"]
    assert [c.name for c in pipeline.children] == ["normalize_airports", "search_flights"]
    assert (pipeline.depth, fixture["search_flights"].span_type) == (1, "TOOL")
    assert fixture["parse_structured_answer"].span_type == "PARSER"
    spans = by_name(normalize_trace(made["tool_calling"]))
    assert spans["policy_check"].span_type == "GUARDRAIL_CHECK"  # kept as given


def test_mlflow_2_microsecond_event_times_land_inside_their_span():
    trace = normalize_trace(load("mlflow-2.21.3_serving_trace.json"))
    llm = by_name(trace)["llm"]
    [event] = llm.events
    assert event.attributes == {"k": "v"}
    assert llm.start_ns <= event.timestamp_ns <= llm.end_ns
    assert llm.offset_ms <= event.offset_ms <= llm.offset_ms + llm.duration_ms
    assert by_name(trace)["retrieve"].documents[0].chunk_id == "c1"


def test_mlflow_3_1_protobuf_dicts():
    trace = normalize_trace(load("mlflow-3.1.0_serving_trace.json"))
    assert [(s.name, s.span_type, s.depth) for s in trace.iter_spans()] == [
        ("root", "AGENT", 0),  # `parent_span_id: ""` is a root
        ("child", "TOOL", 1),
    ]
    assert by_name(trace)["child"].outputs == "x" and by_name(trace)["child"].events == []


def test_mlflow_3_5_hex_ids_and_short_status_codes_read_like_base64_ones():
    raw = load("error_span.json")
    before = normalize_trace(raw).to_dict()
    for span in raw["data"]["spans"]:  # re-encode as MLflow 3.5 wrote them (protocol.md §3.2)
        span["span_id"] = expected_hex(span["span_id"]).upper()
        span["parent_span_id"] = expected_hex(span["parent_span_id"])
        span["status"]["code"] = span["status"]["code"].removeprefix("STATUS_CODE_")
    assert normalize_trace(raw).to_dict() == before


def test_an_orphan_hangs_under_the_root_with_a_note():
    raw = load("tool_calling.json")
    orphan = raw["data"]["spans"][4]  # normalize_airports, under flight_lookup_pipeline
    orphan["parent_span_id"] = base64.b64encode(b"\x01" * 8).decode()
    trace = normalize_trace(raw)
    span = by_name(trace)["normalize_airports"]
    assert span in trace.roots[0].children and span.parent_id == trace.roots[0].span_id
    assert "0101010101010101 was not found" in span.problems[0]
    assert span.raw["span_id"] == orphan["span_id"]
    assert any("not in the trace" in note for note in trace.problems)


def test_spans_without_ids_get_synthetic_ones():
    raw = load("rag_simple.json")
    del raw["data"]["spans"][0]["span_id"]  # the root
    raw["data"]["spans"][2]["span_id"] = None
    trace = normalize_trace(raw)
    root = trace.roots[0]
    assert (root.name, root.span_id) == ("rag_agent", "missing-0")
    assert [c.name for c in root.children] == ["vector_search", "ChatDatabricks"]
    assert trace.find("missing-2").name == "ChatDatabricks"
    assert trace.span_count == 3 and any("no id" in note for note in trace.problems)


def test_unreadable_ids_get_stand_ins_that_keep_the_links():
    raw = load("tool_calling.json")
    spans = {span["name"]: span for span in raw["data"]["spans"]}
    spans["flight_lookup_pipeline"]["span_id"] = "pipeline/1"  # neither hex nor base64
    for child in ("normalize_airports", "search_flights"):
        spans[child]["parent_span_id"] = "pipeline/1"
    trace = normalize_trace(raw)
    pipeline = by_name(trace)["flight_lookup_pipeline"]
    assert [c.name for c in pipeline.children] == ["normalize_airports", "search_flights"]
    assert SAFE_ID.fullmatch(pipeline.span_id) and "pipeline/1" in pipeline.problems[0]
    assert trace.find(pipeline.span_id) is pipeline


def test_parent_cycles_do_not_loop():
    raw = load("tool_calling.json")
    spans = {span["name"]: span for span in raw["data"]["spans"]}
    pipeline, search = spans["flight_lookup_pipeline"], spans["search_flights"]
    pipeline["parent_span_id"] = search["span_id"]  # pipeline → search → pipeline
    spans["get_weather"]["parent_span_id"] = spans["get_weather"]["span_id"]  # its own parent
    trace = normalize_trace(raw)
    assert trace.span_count == 8 == len(list(trace.iter_spans()))
    assert {s.name for s in trace.roots[0].children} >= {"flight_lookup_pipeline", "get_weather"}
    assert any("cycle" in note for note in by_name(trace)["flight_lookup_pipeline"].problems)
    json.dumps(trace.to_dict())


def test_a_broken_attribute_keeps_its_raw_json_and_a_note():
    raw = load("rag_simple.json")
    attributes = raw["data"]["spans"][1]["attributes"]
    attributes["mlflow.spanOutputs"] = attributes["mlflow.spanOutputs"][:50]  # truncated
    del attributes["mlflow.spanType"]
    span = normalize_trace(raw).find(expected_hex(raw["data"]["spans"][1]["span_id"]))
    assert span.outputs == attributes["mlflow.spanOutputs"]
    assert span.span_type == "UNKNOWN" and span.documents is None
    assert span.problems == ["Attribute 'mlflow.spanOutputs' is not valid JSON; kept as text."]
    assert span.raw["attributes"]["mlflow.spanOutputs"] == attributes["mlflow.spanOutputs"]
    assert span.inputs["num_results"] == 3  # the rest was read


def test_a_5000_deep_chain(made):
    trace = normalize_trace(made["deep:5000"])
    spans = list(trace.iter_spans())
    assert [s.depth for s in spans] == list(range(5000)) and trace.problems == []
    assert trace.find(spans[-1].span_id) is spans[-1]
    out = json.loads(json.dumps(trace.to_dict()))  # json.dumps recursion stays bounded
    assert len(out["continued"]) == 4999 // NEST_LIMIT
    assert out["roots"][0]["children"][0]["name"] == "level_1"
    assert out["continued"][0]["depth"] == NEST_LIMIT


def test_to_dict_is_json_with_exact_nanoseconds():
    trace = normalize_trace(load("tool_calling.response.json"))
    out = json.loads(json.dumps(trace.to_dict(), allow_nan=False))
    root = out["roots"][0]
    assert int(root["start_ns"]) == trace.roots[0].start_ns == trace.start_ns
    assert len(root["children"]) == 5 and out["continued"] == []
    assert root["children"][2]["children"][1]["name"] == "search_flights"


def test_find():
    trace = normalize_trace(load("v2/rag_simple.json"))
    span = trace.find("9435a452d141d354")
    assert span.name == "vector_search" and trace.find("0x9435A452D141D354") is span
    assert trace.find("ffffffffffffffff") is None and trace.find(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", [None, [], "", "not json", "[1, 2]", 42, {"info": "x"}, {"data": {"spans": "x"}}]
)
def test_anything_that_is_not_a_trace_gives_notes_not_errors(value):
    trace = normalize_trace(value)
    assert trace.span_count == 0 and trace.roots == []
    assert value == [] or trace.problems
    json.dumps(trace.to_dict(), allow_nan=False)


def test_a_trace_given_as_json_text():
    text = (TRACES_DIR / "rag_simple.response.json").read_text()
    assert normalize_trace(text).to_dict() == normalize_trace(json.loads(text)).to_dict()


def test_speed_stays_far_from_quadratic(made):
    """The budget is ~30 ms for 2,000 spans (bench/trace_render.py); CI boxes vary, so 10x."""
    started = time.perf_counter()
    trace = normalize_trace(made["wide:2000"])
    assert time.perf_counter() - started < 0.3 and trace.span_count == 2000

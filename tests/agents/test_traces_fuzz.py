"""Fuzz: normalize_trace never raises and always gives JSON the API can send, on any JSON value,
on span-shaped garbage, and on real fixture traces damaged at random."""

import copy
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.trace_outline import TraceOutline, outline_from
from agents.traces import normalize_trace
from tests.support import SHARED_FIXTURES

FIXTURE_FILES = sorted((SHARED_FIXTURES / "traces").rglob("*.json"))
FUZZ = settings(max_examples=70, deadline=None, database=None)
SAFE_ID = re.compile(r"[0-9a-f]{16}|(missing|duplicate)-[0-9]+'*")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
SPAN_KEYS = st.sampled_from(
    ["span_id", "parent_span_id", "parent_id", "context", "name", "start_time_unix_nano",
     "end_time_unix_nano", "start_time", "status", "status_code", "attributes", "events"]
)  # fmt: skip
SPAN_LIKE = st.dictionaries(SPAN_KEYS, JSON, max_size=8)


def assert_survives(value: Any) -> None:
    trace = normalize_trace(value)
    assert not any("could not be read" in note for note in trace.problems)  # no last resort
    assert all(SAFE_ID.fullmatch(span.span_id) for span in trace.iter_spans())  # used in URLs
    json.dumps(trace.to_dict(), allow_nan=False)  # also what DRF's strict renderer needs
    assert len(list(trace.iter_spans())) == trace.span_count
    # The outline saved with the turn: JSON too, and the same tree once read back.
    outline = TraceOutline.from_stored(json.loads(json.dumps(outline_from(trace), allow_nan=False)))
    assert outline.span_count == trace.span_count
    assert [s.span_id for s in outline.roots] == [s.span_id for s in trace.roots]


@FUZZ
@given(JSON)
def test_fuzz_any_json_value(value):
    assert_survives(value)
    assert_survives({"info": value, "data": {"spans": [value, {"attributes": value}]}})


@FUZZ
@given(st.lists(SPAN_LIKE, max_size=6), JSON)
def test_fuzz_span_shaped_garbage(spans, info):
    assert_survives({"info": info, "data": {"spans": spans}})


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path in a JSON value, for picking what to damage."""
    found = [prefix] if prefix else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        found += paths(child, (*prefix, key))
    return found


@settings(FUZZ, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURE_FILES), st.data())
def test_fuzz_damaged_real_traces(path, data):
    trace = json.loads(path.read_text())
    for _ in range(data.draw(st.integers(1, 6))):
        candidates = paths(trace)
        if not candidates:
            break
        *parents, last = data.draw(st.sampled_from(candidates))
        node = trace
        for key in parents:
            node = node[key]
        if data.draw(st.booleans()):
            del node[last]
        else:
            node[last] = data.draw(JSON | st.sampled_from(["", "{", "[1,", "=", "0x", "NaN"]))
    assert_survives(copy.deepcopy(trace))
    assert_survives(json.dumps(trace))

"""A trace's outline: the span tree's rows without the spans' contents, stored with each turn.

Opening a 50,000-span trace's tree used to load and normalize its whole stored trace (60 MB of
JSON, 2.5 s). The tree shows only each span's name, type, status, timing and children, so those
are kept in `RequestLog.trace_outline` (a few MB) when the turn or its fetched trace is saved,
and the tree is drawn from them. A span's inputs, outputs, attributes, events and documents are
read from the stored trace one span at a time, when that span is opened (`read_span`).

The outline is made by `normalize_trace` itself, so the tree, its order, its problems and its
stand-in ids are exactly the normalized trace's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.trace_values import gc_paused, hex_span_id, jsonable
from agents.traces import NormalizedTrace, Span, normalize_trace, read_one_span

# Bump when the stored shape changes: outlines of another version are made again when opened.
# 3: `documents`, each retriever span's name and document positions by span id (a rating of a
# document is checked against them without reading the trace; 2 held them by row, briefly).
OUTLINE_VERSION = 3


def outline_of(trace: Any) -> dict | None:
    """The outline to store beside this raw trace; None when there is no trace."""
    if not trace:
        return None
    with gc_paused():  # cyclic GC passes over the normalized trace's objects tripled the time
        return outline_from(normalize_trace(trace))


def outline_from(trace: NormalizedTrace) -> dict:
    """JSON-ready: one row per span, depth-first (a parent before its children, siblings in
    the tree's order), each naming its parent by row number."""
    rows, row_of, span_problems, documents = [], {}, {}, {}
    for number, span in enumerate(trace.iter_spans()):
        row_of[span.span_id] = number
        if span.documents is not None:
            positions = sorted(document.position for document in span.documents)
            documents[span.span_id] = {"name": span.name, "positions": positions}
        parent = -1 if span.depth == 0 else row_of[span.parent_id]
        rows.append(
            [span.span_id, parent, span.source_index, span.name, span.span_type, span.status,
             span.offset_ms, span.duration_ms]
        )  # fmt: skip
        if span.problems:
            span_problems[str(number)] = span.problems
    return {
        "version": OUTLINE_VERSION,
        "trace_id": trace.trace_id,
        "status": trace.status,
        "start_ns": None if trace.start_ns is None else str(trace.start_ns),
        "duration_ms": trace.duration_ms,
        "token_usage": trace.token_usage,
        "problems": trace.problems,
        "spans_path": trace.spans_path,
        "document_columns": list(trace.document_columns),
        "spans": rows,
        "span_problems": span_problems,
        "documents": documents,
    }


@dataclass(eq=False, slots=True)
class OutlineSpan:
    """One row of the tree; the names are Span's, so the tree's templates take either."""

    span_id: str
    parent_id: str | None
    name: str
    span_type: str
    status: str
    offset_ms: float | None
    duration_ms: float | None
    source_index: int  # where the span is in the stored trace's list of spans
    row: int
    depth: int = 0
    children: list[OutlineSpan] = field(default_factory=list)


@dataclass(eq=False)
class TraceOutline:
    """The stored outline as a tree, with what the tree's header shows."""

    trace_id: str | None
    status: str
    start_ns: int | None
    duration_ms: float | None
    token_usage: dict | None
    problems: list[str]
    spans_path: list[str] | None
    document_columns: tuple[str, str, str]
    span_problems: dict[str, list[str]]
    # Each retriever span's name and documents' positions, by span id: what a rating of a
    # document is checked against (agents.selectors.retriever_documents).
    documents: dict[str, dict]
    roots: list[OutlineSpan] = field(default_factory=list)
    span_count: int = 0
    _index: dict[str, OutlineSpan] = field(default_factory=dict, repr=False)

    @classmethod
    def from_stored(cls, stored: Any) -> TraceOutline | None:
        """None when `stored` is no outline of this version (it is then made again)."""
        if not isinstance(stored, dict) or stored.get("version") != OUTLINE_VERSION:
            return None
        start = stored["start_ns"]
        outline = cls(
            trace_id=stored["trace_id"],
            status=stored["status"],
            start_ns=None if start is None else int(start),
            duration_ms=stored["duration_ms"],
            token_usage=stored["token_usage"],
            problems=stored["problems"],
            spans_path=stored["spans_path"],
            document_columns=tuple(stored["document_columns"]),
            span_problems=stored["span_problems"],
            documents=stored["documents"],
        )
        rows, index, roots = [], outline._index, outline.roots
        with gc_paused():  # tens of thousands of small acyclic objects
            for number, row in enumerate(stored["spans"]):
                span_id, parent, source, name, span_type, status, offset, duration = row
                if parent < 0:
                    span = OutlineSpan(
                        span_id, None, name, span_type, status, offset, duration, source, number
                    )
                    roots.append(span)
                else:
                    up = rows[parent]
                    span = OutlineSpan(
                        span_id, up.span_id, name, span_type, status, offset, duration, source,
                        number, up.depth + 1,
                    )  # fmt: skip
                    up.children.append(span)
                rows.append(span)
                index[span_id] = span
        outline.span_count = len(rows)
        return outline

    def find(self, span_id: str) -> OutlineSpan | None:
        """The span with this id (also given as 0x-hex or base64), as NormalizedTrace.find."""
        try:
            return self._index.get(span_id) or self._index.get(hex_span_id(span_id) or "")
        except (ValueError, TypeError):
            return None

    def read_span(self, entry: OutlineSpan, raw: dict) -> Span:
        """The whole span from its raw dict in the stored trace, as `normalize_trace` gives it."""
        span = read_one_span(raw, self.document_columns, self.start_ns)
        span.span_id, span.parent_id, span.depth = entry.span_id, entry.parent_id, entry.depth
        span.source_index = entry.source_index
        span.problems = list(self.span_problems.get(str(entry.row), ()))
        span.raw = jsonable(raw) if span.problems else None
        return span

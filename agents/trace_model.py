"""The normalized trace: one span tree whatever MLflow version wrote the trace (agents.traces)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agents.trace_values import NEST_LIMIT, gc_paused, hex_span_id


@dataclass
class Document:
    position: int  # index in that retriever span's output list
    page_content: str
    doc_uri: str | None
    chunk_id: str | None
    metadata: dict  # the remaining metadata keys
    doc_uri_is_http: bool  # True only for http(s) URIs: the UI links only those


@dataclass
class SpanEvent:
    name: str
    timestamp_ns: int | None
    offset_ms: float | None  # from the trace start
    attributes: dict
    exception_type: str | None = None
    exception_message: str | None = None
    stacktrace: str | None = None


@dataclass(eq=False, slots=True)  # identity equality: field-wise == would walk whole subtrees
class Span:
    span_id: str  # lowercase hex (16 chars); "missing-<n>"/"duplicate-<n>" when absent/reused
    parent_id: str | None  # the parent in this tree (an orphan's is the root it hangs under)
    name: str
    span_type: str
    start_ns: int | None
    end_ns: int | None
    duration_ms: float | None
    offset_ms: float | None
    status: str  # "OK" | "ERROR" | "UNSET"
    status_message: str
    inputs: Any
    outputs: Any
    attributes: dict
    events: list[SpanEvent]
    documents: list[Document] | None
    children: list[Span] = field(default_factory=list, repr=False)
    problems: list[str] = field(default_factory=list)
    raw: dict | None = field(default=None, repr=False)
    depth: int = -1  # -1 until the tree is walked
    source_index: int = -1  # its position in the trace's list of spans (agents.trace_outline)

    def to_dict(self) -> dict:
        """This span with an empty "children" (NormalizedTrace.to_dict nests them)."""
        out = {name: getattr(self, name) for name in _SPAN_KEYS}
        # As strings: 19-digit integers are beyond what JavaScript numbers hold exactly.
        out["start_ns"] = None if self.start_ns is None else str(self.start_ns)
        out["end_ns"] = None if self.end_ns is None else str(self.end_ns)
        out["events"] = [
            {**vars(e), "timestamp_ns": None if e.timestamp_ns is None else str(e.timestamp_ns)}
            for e in self.events
        ]
        if self.documents is not None:
            out["documents"] = [vars(d).copy() for d in self.documents]
        out["children"] = []
        return out


_SPAN_KEYS = [n for n in Span.__dataclass_fields__ if n not in ("children", "source_index")]


@dataclass(eq=False)
class NormalizedTrace:
    trace_id: str | None = None
    request_id: str | None = None  # client_request_id (3.x) or request_id (2.x)
    schema_version: str | None = None
    status: str = "UNKNOWN"  # "OK" | "ERROR" | "IN_PROGRESS" | "UNKNOWN"
    start_ns: int | None = None
    duration_ms: float | None = None
    roots: list[Span] = field(default_factory=list, repr=False)
    span_count: int = 0
    metadata: dict = field(default_factory=dict, repr=False)
    tags: dict = field(default_factory=dict, repr=False)
    token_usage: dict | None = None
    problems: list[str] = field(default_factory=list)
    _index: dict[str, Span] = field(default_factory=dict, repr=False)
    _order: list[Span] = field(default_factory=list, repr=False)  # depth-first, roots first
    # Where the list of spans sits in the stored trace (keys from its top; None when the trace
    # was JSON text), and the retriever's document columns: to read one span alone later.
    spans_path: list[str] | None = field(default=None, repr=False)
    document_columns: tuple[str, str, str] = field(
        default=("page_content", "doc_uri", "chunk_id"), repr=False
    )

    def find(self, span_id: str) -> Span | None:
        """The span with this id (also given as 0x-hex or base64)."""
        try:
            return self._index.get(span_id) or self._index.get(hex_span_id(span_id) or "")
        except (ValueError, TypeError):
            return None

    def iter_spans(self) -> Iterator[Span]:
        return iter(self._order)

    def to_dict(self) -> dict:
        """JSON-serializable, children nested; values are shared with this object, not copied.

        Every NEST_LIMIT levels a subtree moves to the top-level "continued" list (its parent,
        named by "parent_id", has "children_continued": true).
        """
        roots, continued, by_id = [], [], {}
        with gc_paused():
            for span in self._order:  # parents come before their children
                out = by_id[span.span_id] = span.to_dict()
                if span.depth == 0:
                    roots.append(out)
                elif span.depth % NEST_LIMIT == 0:
                    continued.append(out)
                    by_id[span.parent_id]["children_continued"] = True
                else:
                    by_id[span.parent_id]["children"].append(out)
        out = {k: getattr(self, k) for k in _TRACE_KEYS}
        out["start_ns"] = None if self.start_ns is None else str(self.start_ns)
        return {**out, "roots": roots, "continued": continued}


# What the API shows of a trace: not the private indexes, nor where the stored spans sit.
_TRACE_KEYS = [
    k
    for k in NormalizedTrace.__dataclass_fields__
    if k[0] != "_" and k not in ("spans_path", "document_columns")
]

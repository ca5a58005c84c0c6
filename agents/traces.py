"""Turn any MLflow trace dict into one normalized span tree (protocol.md §3).

Traces come in every shape MLflow has written (2.x, 3.1, 3.5, 3.17, the older Databricks "V2"),
and may be truncated or damaged: `normalize_trace` reads what it can, notes what it could not in
`problems`, and never raises. No MLflow import: the app reads other MLflow versions' dicts.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from agents.trace_model import Document, NormalizedTrace, Span, SpanEvent
from agents.trace_values import (
    FAILED,
    NEST_LIMIT,
    as_opt_text,
    as_text,
    decode_value,
    gc_paused,
    hex_span_id,
    jsonable,
    read_time,
)

__all__ = [
    "NEST_LIMIT",
    "Document",
    "NormalizedTrace",
    "Span",
    "SpanEvent",
    "normalize_trace",
    "read_one_span",
]

INPUTS, OUTPUTS, SPAN_TYPE = "mlflow.spanInputs", "mlflow.spanOutputs", "mlflow.spanType"
SCHEMA_KEY, TOKEN_USAGE_KEY = "mlflow.trace_schema.version", "mlflow.trace.tokenUsage"
_LAST = 1 << 100  # sorts spans with no start time after the others
_STATUS = {"OK": "OK", "ERROR": "ERROR", "UNSET": "UNSET", "": "UNSET"}


def normalize_trace(trace: Any) -> NormalizedTrace:
    """Normalize a trace dict, its JSON text or a reply carrying `databricks_output`."""
    try:
        with gc_paused():
            return _Reader().read(trace)
    except Exception as exc:  # a last resort: the reader means to handle everything itself
        return NormalizedTrace(problems=[f"The trace could not be read ({type(exc).__name__})."])


class _Reader:
    """One normalization: the caches, retriever columns and notes that span reads share."""

    def __init__(self) -> None:
        self.ids: dict[Any, str | None] = {}
        self.short_values: dict[str, Any] = {}
        self.columns = ("page_content", "doc_uri", "chunk_id")
        self.problems: list[str] = []

    def read(self, trace: Any) -> NormalizedTrace:
        path: list[str] | None = []  # to the spans; None once JSON text was peeled
        for _ in range(5):  # peel JSON text and reply envelopes off the trace
            if isinstance(trace, str):
                trace, path = decode_value(trace), None
            elif isinstance(trace, dict) and isinstance(trace.get("databricks_output"), dict):
                trace = trace["databricks_output"].get("trace")
                path = None if path is None else [*path, "databricks_output", "trace"]
            else:
                break
        info = trace.get("info") if isinstance(trace, dict) else None
        info = info if isinstance(info, dict) else {}
        spans = trace
        if isinstance(trace, dict):  # the older Databricks "V2" has its spans at the top
            data = trace.get("data")
            spans = data.get("spans") if isinstance(data, dict) else trace.get("spans")
            inner = ["data", "spans"] if isinstance(data, dict) else ["spans"]
            path = None if path is None else [*path, *inner]
            if not isinstance(spans, list):
                self.problems.append("The trace has no list of spans.")
        elif not isinstance(trace, list):
            got = "invalid JSON" if trace is FAILED else type(trace).__name__
            self.problems.append(f"This is not a trace (got {got}).")
        meta = info.get("trace_metadata", info.get("request_metadata"))
        meta = jsonable(meta) if isinstance(meta, dict) else {}
        tags = jsonable(info["tags"]) if isinstance(info.get("tags"), dict) else {}
        self.read_retriever_schema(tags.get("retrievers"))
        version = meta.get(SCHEMA_KEY) or (trace.get(SCHEMA_KEY) if type(trace) is dict else None)
        if version is None and info:
            version = "2" if "request_id" in info and "trace_id" not in info else "3"
        usage = meta.get(TOKEN_USAGE_KEY)
        usage = decode_value(usage) if isinstance(usage, str) else usage
        result = NormalizedTrace(
            trace_id=as_opt_text(info.get("trace_id") or info.get("request_id")),
            request_id=as_opt_text(info.get("client_request_id") or info.get("request_id")),
            schema_version=as_opt_text(version),
            metadata=meta,
            tags=tags,
            token_usage=usage if isinstance(usage, dict) else None,
        )
        self.build(result, spans if isinstance(spans, list) else [])
        result.spans_path = path if isinstance(spans, list) else None
        result.document_columns = self.columns
        state = info.get("state", info.get("status"))
        state = state.upper() if isinstance(state, str) else state
        if state in ("OK", "ERROR", "IN_PROGRESS"):
            result.status = state
        elif state is None and result.roots and result.roots[0].status != "UNSET":
            result.status = result.roots[0].status  # no info: the root span's status
        if result.duration_ms is None:  # no span times: what info reports
            took = info.get("execution_duration_ms", info.get("execution_time_ms"))
            took = read_time(took, "execution", self.problems)
            result.duration_ms = None if took is None else float(took)
        result.problems = self.problems
        return result

    def read_retriever_schema(self, tag: Any) -> None:
        """Custom document columns from the `retrievers` tag; its LAST entry counts (§3.5)."""
        schemas = decode_value(tag) if isinstance(tag, str) else tag
        if isinstance(schemas, list) and schemas and isinstance(schemas[-1], dict):
            last, keys = schemas[-1], ("text_column", "doc_uri", "primary_key")
            self.columns = tuple(
                last[k] if isinstance(last.get(k), str) and last[k] else default
                for k, default in zip(keys, self.columns, strict=True)
            )
        elif tag is not None and schemas != []:
            self.problems.append("The `retrievers` tag is not a list of schemas; ignored.")

    def span_id(self, value: Any, problems: list[str], what: str = "span id") -> str | None:
        hashable = isinstance(value, (str, int))
        found = self.ids.get(value, FAILED) if hashable else FAILED
        if found is not FAILED:
            return found
        try:
            found = self.ids[value] = hex_span_id(value)  # only str and int ids get this far
        except ValueError:
            # A stable 16-hex stand-in: parent links still match, and URLs stay safe.
            text = as_text(value)
            found = blake2b(text.encode(errors="surrogatepass"), digest_size=8).hexdigest()
            problems.append(f"The {what} {text[:80]} is neither hex nor base64; now {found}.")
        return found

    def read_span(self, raw: dict) -> Span:
        """One span of any schema; what cannot be read goes to `problems`."""
        problems: list[str] = []
        v2 = "context" in raw  # 2.x and Databricks "V2"
        ids = raw["context"] if v2 else raw
        span_id = self.span_id(ids.get("span_id") if isinstance(ids, dict) else None, problems)
        parent = raw.get("parent_id") if v2 else raw.get("parent_span_id", raw.get("parent_id"))
        parent_id = self.span_id(parent, problems, "parent id")
        start = read_time(raw.get("start_time_unix_nano", raw.get("start_time")), "start", problems)
        end = read_time(raw.get("end_time_unix_nano", raw.get("end_time")), "end", problems)
        duration_ms = None if start is None or end is None else (end - start) / 1e6
        if duration_ms is not None and duration_ms < 0:
            problems.append("The span ends before it starts.")
            duration_ms = None
        status = raw.get("status")
        if isinstance(status, dict):
            code, message = status.get("code"), status.get("message")
        else:
            code, message = raw.get("status_code", status), raw.get("status_message")
        status = (
            _STATUS.get(code.upper().removeprefix("STATUS_CODE_")) if type(code) is str else None
        )
        if status is None and code is not None:
            problems.append(f"Unknown status code {as_text(code)[:40]}; shown as UNSET.")
        attributes_in = raw.get("attributes")
        if isinstance(attributes_in, str):  # Databricks "V2": the whole dict as one JSON string
            attributes_in = decode_value(attributes_in)
        if not isinstance(attributes_in, dict):
            if attributes_in is not None:
                problems.append("The span's attributes are not an object.")
            attributes_in = {}
        attributes: dict[str, Any] = {}
        short = self.short_values
        for key, value in attributes_in.items():
            key = key if key.__class__ is str else as_text(key)
            if value.__class__ is not str:
                attributes[key] = jsonable(value)
            elif value in short:  # span types, log levels, the trace id: the same on most spans
                attributes[key] = short[value]
            else:
                decoded = attributes[key] = decode_value(value)
                if decoded is FAILED:  # plain text is kept as is; broken JSON is also noted
                    attributes[key] = value
                    if value.lstrip()[:1] in ("{", "[", '"'):
                        problems.append(f"Attribute {key!r} is not valid JSON; kept as text.")
                elif len(value) < 64 and not isinstance(decoded, (dict, list)):
                    short[value] = decoded  # immutable, so sharing it is safe
        inputs, outputs = attributes.pop(INPUTS, None), attributes.pop(OUTPUTS, None)
        span_type = as_opt_text(attributes.get(SPAN_TYPE, raw.get("span_type"))) or "UNKNOWN"
        events = raw.get("events")
        span = Span(
            span_id or "", parent_id, as_text(raw.get("name")), span_type, start, end, duration_ms,
            None, status or "UNSET", as_text(message), inputs, outputs, attributes,
            self.read_events(events, problems) if events else [], None, [], problems,
        )  # fmt: skip
        if isinstance(outputs, list) and span_type.upper() == "RETRIEVER":
            span.documents = self.read_documents(outputs, problems)
        return span

    def read_events(self, events: Any, problems: list[str]) -> list[SpanEvent]:
        if not isinstance(events, list):
            problems.append("The span's events are not a list.")
            return []
        out = []
        for event in events:
            if not isinstance(event, dict):
                problems.append("An event is not an object; skipped.")
                continue
            when = read_time(event.get("time_unix_nano", event.get("timestamp")), "event", problems)
            if when is not None and when < 10**17:  # MLflow 2.x: microseconds (16 digits)
                when *= 1000
            attributes = event.get("attributes")
            if attributes is not None and not isinstance(attributes, dict):
                problems.append("An event's attributes are not an object.")
            attributes = jsonable(attributes) if isinstance(attributes, dict) else {}
            item = SpanEvent(as_text(event.get("name")), when, None, attributes)
            if item.name == "exception":  # OpenTelemetry's exception event
                item.exception_type = as_opt_text(attributes.get("exception.type"))
                item.exception_message = as_opt_text(attributes.get("exception.message"))
                item.stacktrace = as_opt_text(attributes.get("exception.stacktrace"))
            out.append(item)
        return out

    def read_documents(self, outputs: list, problems: list[str]) -> list[Document]:
        """`{page_content, metadata: {doc_uri, chunk_id, ...}, id}`, or keys at the top level."""
        text_col, uri_col, id_col = self.columns
        documents = []
        for position, item in enumerate(outputs):
            item = {text_col: item} if isinstance(item, str) else item
            if not isinstance(item, dict):
                problems.append(f"Document {position} is not an object; skipped.")
                continue
            metadata = item.get("metadata")
            if metadata is not None and not isinstance(metadata, dict):
                problems.append(f"Document {position}'s metadata is not an object.")
            # Top-level keys first, so that metadata (where MLflow puts them) wins a clash.
            rest = {k: v for k, v in item.items() if k not in ("metadata", "id")}
            rest.update(metadata if isinstance(metadata, dict) else {})
            content = _pop_first(rest, text_col, "page_content")
            uri = as_opt_text(_pop_first(rest, uri_col, "doc_uri"))
            # Document.id stands in when no chunk id is given.
            chunk_id = as_opt_text(_pop_first(rest, id_col, "chunk_id")) or as_opt_text(
                item.get("id")
            )
            is_http = uri is not None and uri.strip()[:8].lower().startswith(("http://", "https:/"))
            documents.append(Document(position, as_text(content), uri, chunk_id, rest, is_http))
        return documents

    def build(self, result: NormalizedTrace, spans_in: list) -> None:
        """Read every span, then link the tree iteratively (chains can be 5,000 deep)."""
        spans, index = [], result._index
        counts = dict.fromkeys(("not an object", "missing", "duplicate", "orphan", "cycle"), 0)
        for position, raw in enumerate(spans_in):
            if not isinstance(raw, dict):
                counts["not an object"] += 1
                continue
            span = self.read_span(raw)
            if not span.span_id or span.span_id in index:
                kind = "duplicate" if span.span_id else "missing"
                span.problems.append(f"Span id {span.span_id or '(none)'} is unusable; renamed.")
                span.span_id = f"{kind}-{position}"
                while span.span_id in index:  # input ids are free text, so avoid theirs
                    span.span_id += "'"
                counts[kind] += 1
            index[span.span_id] = span
            span.source_index = position
            spans.append(span)
            span.raw = raw  # a reference for now; a JSON-safe copy is kept if it has problems
        roots, orphans = [], []
        for span in spans:
            if span.parent_id is None:
                roots.append(span)
            elif span.parent_id == span.span_id or span.parent_id not in index:
                orphans.append(span)
            else:
                index[span.parent_id].children.append(span)
        if orphans and not roots:  # the root is missing: show each piece as a root
            for span in orphans:
                span.problems.append(f"Parent {span.parent_id} was not found; shown as a root.")
                span.parent_id = None
            roots, orphans = orphans, []
        roots.sort(key=_start_order)
        for span in orphans:
            _adopt(span, roots[0], f"Parent {span.parent_id} was not found")
        counts["orphan"] = len(orphans)
        _walk(roots, result._order)
        if len(result._order) < len(spans):  # unreached spans hang from a cycle of parent links
            for span in spans:
                if span.depth < 0:  # cut the cycle at this span
                    index[span.parent_id].children.remove(span)  # type: ignore[index]
                    if roots:
                        _adopt(span, roots[0], "Its parent links form a cycle")
                    else:
                        span.problems.append("Its parent links form a cycle; shown as a root.")
                        span.parent_id = None
                        roots.append(span)
                    _walk([span], [])  # marks the spans it now reaches
                    counts["cycle"] += 1
        for span in spans:
            if len(span.children) > 1:
                span.children.sort(key=_start_order)
        result._order.clear()
        _walk(roots, result._order)
        starts = [s.start_ns for s in spans if s.start_ns is not None]
        ends = [s.end_ns for s in spans if s.end_ns is not None]
        if starts:
            start = result.start_ns = min(starts)
            for span in spans:
                _place_in_time(span, start)
            if ends and max(ends) >= start:
                result.duration_ms = (max(ends) - start) / 1e6
        for span in spans:
            span.raw = jsonable(span.raw) if span.problems else None
        result.roots, result.span_count = roots, len(spans)
        self.problems += [f"{n} span(s): {_COUNTED[what]}." for what, n in counts.items() if n]
        if damaged := sum(1 for span in spans if span.problems):
            self.problems.append(f"{damaged} span(s) have problems (see each span).")


_COUNTED = {  # trace-level notes on how spans were placed in the tree
    "not an object": "not an object, skipped",
    "missing": "had no id (given one, e.g. missing-3)",
    "duplicate": "reused another span's id (renamed, e.g. duplicate-3)",
    "orphan": "had a parent that is not in the trace (hung under the root)",
    "cycle": "had parent links forming a cycle (hung under the root)",
}


def read_one_span(
    raw: dict, document_columns: tuple[str, str, str], trace_start_ns: int | None
) -> Span:
    """One span of a trace read on its own, as `normalize_trace` reads it, except for what only
    the whole trace tells: its place in the tree and the problems found placing it
    (agents.trace_outline keeps those)."""
    reader = _Reader()
    reader.columns = document_columns
    with gc_paused():
        span = reader.read_span(raw)
    if trace_start_ns is not None:
        _place_in_time(span, trace_start_ns)
    return span


def _place_in_time(span: Span, trace_start_ns: int) -> None:
    """Offsets from the trace's start, of the span and its events."""
    start = trace_start_ns
    span.offset_ms = None if span.start_ns is None else (span.start_ns - start) / 1e6
    for event in span.events:
        if event.timestamp_ns is not None:
            event.offset_ms = (event.timestamp_ns - start) / 1e6


def _adopt(span: Span, root: Span, why: str) -> None:
    span.problems.append(f"{why}; shown under the root.")
    span.parent_id = root.span_id
    root.children.append(span)


def _walk(roots: list[Span], order: list[Span]) -> None:
    """Depth-first order and depths, with an explicit stack instead of recursion."""
    for root in roots:
        root.depth = 0
    stack = roots[::-1]
    while stack:
        span = stack.pop()
        order.append(span)
        if span.children:
            for child in span.children:
                child.depth = span.depth + 1
            stack.extend(reversed(span.children))


def _start_order(span: Span) -> tuple[int, str]:
    return (_LAST if span.start_ns is None else span.start_ns, span.name)


def _pop_first(values: dict, *keys: str) -> Any:
    for key in keys:
        if values.get(key) is not None:
            return values.pop(key)
    return None

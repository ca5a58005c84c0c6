"""Real MLflow traces for tests and benchmarks, made by MLflow's own Databricks-serving path.

Each trace is the `Trace.to_dict()` that a serving endpoint returns under
`databricks_output.trace` (mlflow-notes.md: serving environment, a prediction context with a
request id, then `pop_trace(request_id)`); nothing is written by hand.

MLflow must see the serving environment before its first import, and that environment must stay
out of the Django test process (as in tests/support/demo_agent.py). So `make_traces` and friends
run MLflow in a child process (`python -m tests.support.mlflow_traces SPEC...` prints a JSON
object) and cache its output for the session; a process of its own, such as the benchmark, may
call `use_serving_environment()` first and then `generate(spec)` in-process.

Specs: "rag", "rag_custom_columns", "tool_calling", "error", "hostile", "wide:<spans>",
"deep:<depth>".
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import uuid
from contextlib import suppress
from typing import Any

from tests.support import REPO_ROOT

SERVING_ENV = {
    "IS_IN_DB_MODEL_SERVING_ENV": "true",  # finished traces go to the buffer pop_trace reads
    "ENABLE_MLFLOW_TRACING": "true",
    # Empty: else MLflow fetches an LLM price catalog over HTTP for spans with token usage.
    "MLFLOW_MODEL_CATALOG_URI": "",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
# With an experiment id set, the serving exporter would also ship traces to Databricks.
UNSET_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI")
CHILD_TIMEOUT_S = 300
_WORDS = [
    *("mlflow", "trace", "span", "agent", "retriever", "document", "chunk", "vector", "index"),
    *("query", "answer", "model", "token", "latency", "tool", "call", "result", "context"),
    *("prompt", "user", "assistant", "review", "feedback", "serving", "endpoint"),
]


def make_traces(*specs: str) -> dict[str, dict]:
    """{spec: trace dict} for these specs, made in one child process (cached per spec list).

    Each call returns fresh dicts, so a test may mutate what it gets.
    """
    return json.loads(_child_output(tuple(specs)))


def make_trace(shape: str) -> dict:
    return make_traces(shape)[shape]


def make_wide_trace(n_spans: int) -> dict:
    return make_traces(f"wide:{n_spans}")[f"wide:{n_spans}"]


def make_deep_trace(depth: int) -> dict:
    return make_traces(f"deep:{depth}")[f"deep:{depth}"]


@functools.cache
def _child_output(specs: tuple[str, ...]) -> str:
    env = {**os.environ, **SERVING_ENV}
    for name in UNSET_ENV:
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.mlflow_traces", *specs],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Making MLflow traces {specs} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def use_serving_environment() -> None:
    """Put MLflow's serving environment in place; call before anything imports mlflow."""
    if "mlflow" in sys.modules and os.environ.get("IS_IN_DB_MODEL_SERVING_ENV") != "true":
        raise RuntimeError("mlflow was imported before its serving environment was set")
    os.environ.update(SERVING_ENV)
    for name in UNSET_ENV:
        os.environ.pop(name, None)


def generate(spec: str) -> dict:
    """One trace, made in this process (which must have called use_serving_environment)."""
    shape, _, size = spec.partition(":")
    makers = {
        "rag": _rag,
        "rag_custom_columns": _rag_custom_columns,
        "tool_calling": _tool_calling,
        "error": _error,
        "hostile": _hostile,
        "wide": _wide,
        "deep": _deep,
    }
    if shape not in makers:
        raise ValueError(f"Unknown trace spec {spec!r}")
    return makers[shape](int(size)) if size else makers[shape]()


def _serve(agent: Any, *, dependencies_schemas: dict | None = None) -> dict:
    """Run `agent()` as Model Serving does and return the trace it buffered."""
    from mlflow.pyfunc.context import Context, set_prediction_context
    from mlflow.tracing.export.inference_table import pop_trace

    request_id = str(uuid.uuid4())
    context = Context(
        request_id=request_id,
        endpoint_name="tests-endpoint",
        dependencies_schemas=dependencies_schemas,
    )
    try:
        with set_prediction_context(context):
            agent()
    finally:
        trace = pop_trace(request_id)
    if trace is None:
        raise RuntimeError("MLflow buffered no trace: is the serving environment set?")
    return trace


def _chat_completion(text: str, usage: tuple[int, int] = (40, 12)) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-llm",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def _llm_span(name: str, messages: list[dict], answer: str, span_type: str = "CHAT_MODEL") -> None:
    import mlflow
    from mlflow.tracing.constant import SpanAttributeKey

    with mlflow.start_span(name=name, span_type=span_type) as span:
        span.set_inputs({"messages": messages, "model": "test-llm"})
        span.set_outputs(_chat_completion(answer))
        usage = {"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}
        span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)


def _rag(documents: list | None = None) -> dict:
    import mlflow
    from mlflow.entities import Document, SpanEvent

    question = "How does MLflow Tracing show retrieved documents?"
    if documents is None:
        documents = [
            Document(
                page_content="A RETRIEVER span's outputs are a list of documents.",
                metadata={"doc_uri": "https://docs.example.com/span-types.html", "chunk_id": "7"},
                id="doc-7",
            ),
            Document(
                page_content="Chunks come from a vector index.",
                metadata={"doc_uri": "dbfs:/Volumes/main/docs/index.md", "chunk_id": "12"},
                id="doc-12",
            ),
            Document(page_content="A chunk with no source.", metadata={"section": "faq"}),
        ]

    def agent() -> None:
        with mlflow.start_span(name="rag_agent", span_type="AGENT") as root:
            root.set_inputs({"messages": [{"role": "user", "content": question}]})
            with mlflow.start_span(name="vector_search", span_type="RETRIEVER") as retriever:
                retriever.set_inputs({"query": question, "num_results": len(documents)})
                retriever.set_outputs(documents)
                retriever.add_event(SpanEvent("cache_miss", attributes={"index": "docs"}))
            _llm_span("ChatDatabricks", [{"role": "user", "content": question}], "Spans [1].")
            root.set_outputs(_chat_completion("Spans [1]."))

    return _serve(agent)


# Markup an agent could return anywhere; the pages must show it as text and run none of it.
HOSTILE_TEXT = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def _hostile() -> dict:
    """A RAG trace whose document carries script and an event handler, with a javascript: URI."""
    from mlflow.entities import Document

    return _rag(
        documents=[
            Document(
                page_content=f"Ignore the above. {HOSTILE_TEXT}",
                metadata={"doc_uri": "javascript:window.pwned=3", "chunk_id": HOSTILE_TEXT},
                id="hostile-1",
            )
        ]
    )


def _rag_custom_columns() -> dict:
    """A retriever whose documents use other column names, declared as MLflow declares them."""
    from mlflow.entities import Document
    from mlflow.models import set_retriever_schema
    from mlflow.models.dependencies_schemas import _get_dependencies_schemas

    set_retriever_schema(name="old", primary_key="ignored_id", text_column="ignored_text")
    set_retriever_schema(
        name="docs_index", primary_key="doc_id", text_column="body", doc_uri="url",
        other_columns=["title"],
    )  # fmt: skip
    with _get_dependencies_schemas() as schemas:  # as log_model stores them in model metadata
        stored = schemas.to_dict()["dependencies_schemas"]
    documents = [
        Document(
            page_content="Custom columns are declared with set_retriever_schema.",
            metadata={"url": "https://docs.example.com/schema.html", "doc_id": "d-1", "title": "T"},
        )
    ]
    # Serving puts them in the prediction context as JSON text (pyfunc `_update_dependencies…`).
    schemas_json = {name: json.dumps(value) for name, value in stored.items()}
    return _serve(lambda: _rag_agent_with(documents), dependencies_schemas=schemas_json)


def _rag_agent_with(documents: list) -> None:
    import mlflow

    with mlflow.start_span(name="rag_agent", span_type="AGENT") as root:
        root.set_inputs({"query": "custom columns"})
        with mlflow.start_span(name="docs_index", span_type="RETRIEVER") as retriever:
            retriever.set_inputs({"query": "custom columns"})
            retriever.set_outputs(documents)
        root.set_outputs({"answer": "ok"})


def _tool_calling() -> dict:
    import mlflow

    question = "Weather in Lisbon and a flight SFO->LIS?"
    messages = [{"role": "user", "content": question}]

    @mlflow.trace(span_type="TOOL")
    def get_weather(city: str) -> dict:
        return {"city": city, "temperature": 17, "conditions": "partly cloudy"}

    @mlflow.trace(span_type="TOOL")
    def search_flights(origin: str, destination: str) -> list[dict]:
        return [{"flight": "UA8821", "price_usd": 689}, {"flight": "TP238", "price_usd": 742}]

    @mlflow.trace(span_type="CHAIN")
    def normalize_airports(origin: str, destination: str) -> dict:
        return {"origin": origin.upper(), "destination": destination.upper()}

    @mlflow.trace(span_type="CHAIN")
    def flight_pipeline(origin: str, destination: str) -> list[dict]:
        codes = normalize_airports(origin, destination)
        return search_flights(codes["origin"], codes["destination"])

    @mlflow.trace(span_type="GUARDRAIL_CHECK")  # a custom span type: must be kept as given
    def policy_check(text: str) -> dict:
        return {"allowed": True}

    def agent() -> None:
        with mlflow.start_span(name="travel_agent", span_type="AGENT") as root:
            root.set_inputs({"messages": messages})
            _llm_span("plan_with_tools", messages, "Calling tools.", span_type="LLM")
            weather = get_weather("Lisbon")
            flights = flight_pipeline("sfo", "lis")
            answer = f"{weather['temperature']}°C; cheapest {flights[0]['flight']}."
            _llm_span("compose_answer", messages, answer, span_type="LLM")
            policy_check(answer)
            root.set_outputs(_chat_completion(answer))

    return _serve(agent)


class WarehouseQueryError(RuntimeError):
    """The exception the error trace records (its type name shows in the exception event)."""


def _error() -> dict:
    import mlflow

    @mlflow.trace(span_type="TOOL")
    def run_sql_query(sql: str) -> list:
        raise WarehouseQueryError("[TABLE_OR_VIEW_NOT_FOUND] main.sales.orders_v2")

    @mlflow.trace(span_type="CHAIN")
    def fetch_sales_context(question: str) -> list:
        return run_sql_query("SELECT region, SUM(amount) FROM main.sales.orders_v2")

    def agent() -> None:
        with mlflow.start_span(name="sales_agent", span_type="AGENT") as root:
            root.set_inputs({"messages": [{"role": "user", "content": "Sales by region?"}]})
            with suppress(WarehouseQueryError):  # the agent apologizes, as real agents do
                fetch_sales_context("Sales by region?")
            _llm_span("fallback_llm", [], "I could not query the sales table.")
            root.set_outputs(_chat_completion("I could not query the sales table."))

    return _serve(agent)


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def _wide(n_spans: int) -> dict:
    """A big realistic trace: an AGENT root over steps of 6 spans (CHAIN > RETRIEVER with 5
    documents or EMBEDDING, CHAT_MODEL, TOOL > PARSER, LLM), inputs/outputs of a few hundred
    bytes, 4 levels deep; `n_spans` spans in all."""
    import mlflow
    from mlflow.entities import Document

    rng = random.Random(n_spans)  # deterministic content for a given size
    pattern = [(1, "CHAIN"), (2, "RETRIEVER"), (2, "CHAT_MODEL"), (2, "TOOL"), (3, "PARSER")]
    pattern.append((3, "LLM"))

    def agent() -> None:
        root = mlflow.start_span_no_context("agent", span_type="AGENT")
        root.set_inputs({"messages": [{"role": "user", "content": _text(rng, 40)}]})
        stack = [root]  # stack[d] is the open span at depth d
        for i in range(n_spans - 1):
            depth, span_type = pattern[i % len(pattern)]
            if span_type == "RETRIEVER" and (i // len(pattern)) % 2:
                span_type = "EMBEDDING"
            while len(stack) > depth:
                stack.pop().end()
            span = mlflow.start_span_no_context(
                f"{span_type.lower()}_{i}", span_type=span_type, parent_span=stack[-1]
            )
            span.set_inputs({"query": _text(rng, 30), "step": i, "options": {"top_k": 5}})
            if span_type == "RETRIEVER":
                documents = [
                    Document(
                        page_content=_text(rng, 25),
                        metadata={"doc_uri": f"https://docs.example.com/{i}/{k}", "chunk_id": k},
                        id=f"{i}-{k}",
                    )
                    for k in range(5)
                ]
                span.set_outputs(documents)
            else:
                span.set_outputs({"result": _text(rng, 35), "score": rng.random()})
            span.set_attribute("component.version", "1.2.3")
            stack.append(span)
        root.set_outputs(_chat_completion(_text(rng, 40)))
        while stack:
            stack.pop().end()

    return _serve(agent)


def _deep(depth: int) -> dict:
    """A chain of `depth` nested spans (no context managers: they would nest Python frames)."""
    import mlflow

    def agent() -> None:
        spans = [mlflow.start_span_no_context("level_0", span_type="AGENT", inputs={"level": 0})]
        for level in range(1, depth):
            spans.append(
                mlflow.start_span_no_context(
                    f"level_{level}", span_type="CHAIN", parent_span=spans[-1]
                )
            )
        for span in reversed(spans):
            span.set_outputs({"ok": True})
            span.end()

    return _serve(agent)


if __name__ == "__main__":
    use_serving_environment()
    json.dump({spec: generate(spec) for spec in sys.argv[1:]}, sys.stdout)

"""The agent that the suite's MLflow AgentServer serves (tests/support/agent_server.py).

A ResponsesAgent registered with MLflow's `@invoke()` and `@stream()`: it retrieves from a tiny
list of documents (a RETRIEVER span), writes a fixed answer naming the best one (a CHAT_MODEL
span), and returns it whole or as text deltas. Everything is deterministic except the output
item's id. Traces go to the tracking server of `MLFLOW_TRACKING_URI`, experiment
`MLFLOW_EXPERIMENT_NAME`; the AgentServer adds the root span around each call.

A question starting with `FAIL_PREFIX` makes the agent raise, to see the server's error shapes.

Run with `python -m uvicorn tests.support.agent_server_app:app` (the fixture does): uvicorn
imports this module once, so each decorator registers once, as MLflow requires.
"""

import os
import re
import uuid
from collections.abc import Iterator

import mlflow
from mlflow.entities import Document, SpanType
from mlflow.genai.agent_server import AgentServer, invoke, stream
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    create_text_delta,
    create_text_output_item,
)

EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
FAIL_PREFIX = "FAIL:"
ANSWER_PREFIX = "From the AgentServer test docs:"
DOCUMENTS = [
    Document(
        page_content="The MLflow AgentServer serves an agent on /invocations and /responses.",
        metadata={
            "doc_uri": "https://docs.example.com/agent-server/serving.html",
            "chunk_id": "a1",
        },
        id="a1",
    ),
    Document(
        page_content="With x-mlflow-return-trace-id: true the AgentServer returns the trace id.",
        metadata={"doc_uri": "https://docs.example.com/agent-server/traces.html", "chunk_id": "a2"},
        id="a2",
    ),
    Document(
        page_content="Traces are exported to the tracking server after the answer is sent.",
        metadata={"doc_uri": "https://docs.example.com/agent-server/export.html", "chunk_id": "a3"},
        id="a3",
    ),
]
TOP_K = 2


def expected_answer(question: str) -> str:
    """The agent's answer to `question`, for tests to compare with (nothing traced)."""
    return _write(question, _rank(question)[:TOP_K])


def _write(question: str, documents: list[Document]) -> str:
    if not documents:
        return f"{ANSWER_PREFIX} nothing found."
    return f"{ANSWER_PREFIX} {documents[0].page_content} [1] (asked: {question.strip()})"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _rank(question: str) -> list[Document]:
    # Stable sort: ties keep the list's order, so the answer never depends on set iteration.
    asked = _words(question)
    return sorted(DOCUMENTS, key=lambda doc: -len(asked & _words(doc.page_content)))


def _question(request: ResponsesAgentRequest) -> str:
    for item in reversed(request.input):
        message = item.model_dump()
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    raise ValueError("The request has no user message.")


@mlflow.trace(name="retrieve_docs", span_type=SpanType.RETRIEVER)
def retrieve(query: str) -> list[Document]:
    return _rank(query)[:TOP_K]


@mlflow.trace(name="compose_answer", span_type=SpanType.CHAT_MODEL)
def compose(question: str, documents: list[Document]) -> str:
    return _write(question, documents)


def _answer(request: ResponsesAgentRequest) -> str:
    question = _question(request)
    if question.startswith(FAIL_PREFIX):
        raise RuntimeError("The test agent was asked to fail.")
    return compose(question, retrieve(question))


def _custom_outputs(request: ResponsesAgentRequest) -> dict:
    # Echoed so tests can see what the app sent besides the messages.
    context = request.context.model_dump(exclude_none=True) if request.context else {}
    return {"custom_inputs": request.custom_inputs or {}, "context": context}


@invoke()
def answer(request: ResponsesAgentRequest) -> ResponsesAgentResponse:
    item = create_text_output_item(_answer(request), id=f"msg_{uuid.uuid4().hex}")
    return ResponsesAgentResponse(output=[item], custom_outputs=_custom_outputs(request))


@stream()
def answer_stream(request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
    text, item_id = _answer(request), f"msg_{uuid.uuid4().hex}"
    for piece in re.findall(r"\S+\s*", text):
        yield ResponsesAgentStreamEvent(**create_text_delta(piece, item_id))
    yield ResponsesAgentStreamEvent(
        type="response.output_item.done",
        item=create_text_output_item(text, id=item_id),
        custom_outputs=_custom_outputs(request),
    )


if os.environ.get(EXPERIMENT_ENV):
    mlflow.set_experiment(os.environ[EXPERIMENT_ENV])
app = AgentServer("ResponsesAgent").app

"""The traced agent: keyword retrieval over a bundled corpus, then a deterministic "LLM".

Traces are made by MLflow's own API (spans with span types, documents, token usage) and taken
from MLflow's Databricks-serving buffer with `pop_trace(request_id)`, exactly as Model Serving
does, so the trace dict is the one a real endpoint would return (mlflow-notes.md).
"""

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

# The package __init__ has set MLflow's environment before this import.
import mlflow
from mlflow.entities import Document, SpanType
from mlflow.pyfunc.context import Context, set_prediction_context
from mlflow.tracing.constant import SpanAttributeKey
from mlflow.tracing.export.inference_table import pop_trace
from mlflow.tracing.provider import is_tracing_enabled

from demo_agent.replies import AgentTurn, build_reply
from demo_agent.validation import ChatRequest

MODEL_NAME = "demo-llm"
AGENT_SPAN = "demo_rag_agent"
CORPUS_PATH = Path(__file__).with_name("corpus.json")

# Words too common to say anything about relevance.
_STOPWORD_TEXT = """a an and are as at be by can do does for from how i in is it me my of on or so
that the their them then there this to was what when where which who why will with you your"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def load_corpus(path: Path = CORPUS_PATH) -> list[dict[str, str]]:
    chunks = json.loads(path.read_text(encoding="utf-8"))
    for chunk in chunks:
        missing = {"chunk_id", "doc_uri", "page_content"} - set(chunk)
        if missing:
            raise ValueError(f"{path}: chunk {chunk!r} lacks {sorted(missing)}")
    return chunks


CORPUS = load_corpus()


def terms(text: str) -> set[str]:
    """Content words, crudely singularised so "documents" matches "document"."""
    words = re.findall(r"[a-z0-9_]+", text.lower())
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in STOPWORDS}


# Computed once: re-tokenising the corpus on every turn was a tenth of the untraced run's CPU.
CORPUS_TERMS = [terms(chunk["page_content"]) for chunk in CORPUS]


def count_tokens(text: str) -> int:
    # Whitespace tokens: crude, but deterministic and enough to make usage numbers move.
    return len(text.split())


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]


def retrieve(question: str, top_k: int) -> tuple[list[dict[str, Any]], int]:
    """Top `top_k` chunks by keyword overlap, as MLflow Documents; also the best score."""
    with mlflow.start_span(name="retrieve_docs", span_type=SpanType.RETRIEVER) as span:
        span.set_inputs({"query": question, "top_k": top_k})
        query = terms(question)
        scored = [(len(query & chunk_terms), i) for i, chunk_terms in enumerate(CORPUS_TERMS)]
        # Highest overlap first; ties keep corpus order so answers are reproducible.
        ranked = sorted(scored, key=lambda s: (-s[0], s[1]))[:top_k]
        documents = [
            Document(
                page_content=CORPUS[i]["page_content"],
                metadata={"doc_uri": CORPUS[i]["doc_uri"], "chunk_id": CORPUS[i]["chunk_id"]},
                id=CORPUS[i]["chunk_id"],
            ).to_dict()
            for _, i in ranked
        ]
        span.set_outputs(documents)
    return documents, ranked[0][0] if ranked else 0


def system_prompt(documents: list[dict[str, Any]], style: str) -> str:
    context = "\n".join(
        f"[{n}] ({d['metadata']['doc_uri']}) {d['page_content']}"
        for n, d in enumerate(documents, 1)
    )
    return (
        f"You are the demo RAG agent. Answer in a {style} style using only the context below, "
        f"citing sources as [n].\n\nContext:\n{context}"
    )


JUDGE_PARTS = re.compile(r"answer:\s*(?P<answer>.*?)\s*expected:\s*(?P<expected>.*)", re.I | re.S)


def judge(question: str) -> str:
    """The `judge` style: an LLM judge's verdict as JSON {score, rationale}, the share of the
    expected answer's content words that the answer uses, read from a message holding an
    `Answer:` part then an `Expected:` part. Without them, a plain sentence (not a verdict)."""
    parts = JUDGE_PARTS.search(question)
    if parts is None:
        return "I need an 'Answer:' part and then an 'Expected:' part to judge."
    expected = terms(parts["expected"])
    found = expected & terms(parts["answer"])
    score = round(len(found) / len(expected), 2) if expected else 0.0
    rationale = f"{len(found)} of {len(expected)} expected terms are in the answer."
    return json.dumps({"score": score, "rationale": rationale})


def compose_answer(question: str, documents: list[dict[str, Any]], style: str, best: int) -> str:
    """The demo "LLM": stitches retrieved chunks together; each style reads differently."""
    if style == "judge":
        return judge(question)
    preface = "" if best > 0 else "I found nothing specific about that; the closest I have: "
    if style == "bullets":
        lines = [f"- {first_sentence(d['page_content'])} [{n}]" for n, d in enumerate(documents, 1)]
        return (preface + "\n" if preface else "") + "\n".join(lines)
    if style == "detailed":
        paragraphs = [f"{d['page_content']} [{n}]" for n, d in enumerate(documents, 1)]
        sources = "; ".join(f"[{n}] {d['metadata']['doc_uri']}" for n, d in enumerate(documents, 1))
        count = len(documents)
        intro = f'{preface}Here is what {count} retrieved document(s) say about "{question}":'
        return "\n\n".join([intro, *paragraphs, f"Sources: {sources}"])
    return f"{preface}{first_sentence(documents[0]['page_content'])} [1]"


def chat_model(
    request: ChatRequest, documents: list[dict[str, Any]], best: int
) -> tuple[dict[str, Any], dict[str, int]]:
    with mlflow.start_span(name="demo_llm", span_type=SpanType.CHAT_MODEL) as span:
        messages = [
            {"role": "system", "content": system_prompt(documents, request.style)},
            *request.messages,
        ]
        span.set_inputs({"messages": messages, "temperature": 0.0})
        answer = compose_answer(request.question, documents, request.style, best)
        prompt_text = " ".join(str(m.get("content") or "") for m in messages)
        usage = {
            "input_tokens": count_tokens(prompt_text),
            "output_tokens": count_tokens(answer),
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        # MLflow sums this attribute into the trace's `mlflow.trace.tokenUsage` metadata.
        span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)
        span.set_attribute(SpanAttributeKey.MODEL, MODEL_NAME)
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_NAME,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage["input_tokens"],
                "completion_tokens": usage["output_tokens"],
                "total_tokens": usage["total_tokens"],
            },
        }
        span.set_outputs(completion)
    return completion, usage


def run_agent(
    request: ChatRequest, request_id: str, endpoint: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Answer one chat turn; returns (reply in the request's schema, without databricks_output;
    trace dict).

    Synchronous on purpose: it takes about a millisecond, and MLflow's prediction context and
    active span are context variables that must not be interleaved with other requests.
    """
    # endpoint_name lands in trace metadata `mlflow.databricks.modelServingEndpointName`.
    context = Context(request_id=request_id, endpoint_name=endpoint)
    try:
        with (
            set_prediction_context(context),
            mlflow.start_span(name=AGENT_SPAN, span_type=SpanType.AGENT) as root,
        ):
            root.set_inputs(request.body)
            documents, best = retrieve(request.question, request.top_k)
            completion, _ = chat_model(request, documents, best)
            # The root span shows what the endpoint answers, as a real agent's trace does.
            reply = build_reply(AgentTurn(request, documents, completion))
            root.set_outputs(reply)
            if is_tracing_enabled():  # --no-traces: nothing to tag
                _tag_trace(request, completion)
    finally:
        # Always pop, also when the trace is not asked for or the run failed: the buffer would
        # otherwise hold every trace until its TTL and evict ones still wanted.
        trace = pop_trace(request_id)
    return reply, trace


def _tag_trace(request: ChatRequest, completion: dict[str, Any]) -> None:
    mlflow.update_current_trace(
        tags={
            "demo_agent.style": request.style,
            "demo_agent.top_k": str(request.top_k),
            "demo_agent.schema": str(request.schema),
        },
        session_id=request.conversation_id,  # metadata `mlflow.trace.session`
        user=request.user_id,  # metadata `mlflow.trace.user`
        request_preview=request.question[:1000],
        response_preview=completion["choices"][0]["message"]["content"][:1000],
    )

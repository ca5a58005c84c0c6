"""Streamed replies: each schema's chunk objects as server-sent events, ending `data: [DONE]`.

The agent has already run (and made its trace) when streaming starts; the answer is then sent
word by word, with a pause between events, so a client sees the answer grow and the trace
arrive only at the end. Shapes follow the fixtures in shared/fixtures/streams and protocol.md
§1.2-1.5, §2.3: `databricks_output.databricks_request_id` rides on the first event, and with
`return_trace` the last data event carries `{databricks_request_id, trace}` (for Responses that
is the message's `response.output_item.done`).

Waiting is `asyncio.sleep`, so a stream in flight costs a coroutine, not a thread.
"""

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse

from demo_agent.schemas import AgentSchema
from demo_agent.validation import Simulation

DONE = "data: [DONE]\n\n"
# simulate.stream_error: how many answer events get out before the error event.
ANSWER_EVENTS_BEFORE_ERROR = 3
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SimulatedStreamCut(Exception):
    """Raised inside a streaming body on purpose: the response has started, so uvicorn can only
    close the connection, and the client is left with a chunked body that never ends."""


class HideSimulatedStreamCuts(logging.Filter):
    """Keeps uvicorn from logging a traceback for every cut that was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedStreamCut))


def words(text: str) -> list[str]:
    """`text` in pieces of one word each, whitespace kept, so joining them gives `text` back."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or [text]


@dataclass
class StreamPlan:
    events: list[dict[str, Any]]
    first_answer_event: int  # index of the first event carrying answer text


def chat_completions_events(reply: dict[str, Any]) -> StreamPlan:
    base = {"id": reply["id"], "model": reply["model"], "object": "chat.completion.chunk"}
    base["created"] = reply["created"]

    def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"choices": [{"delta": delta, "index": 0, **extra}], **base}

    answer = reply["choices"][0]["message"]["content"]
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"role": "assistant", "content": piece}) for piece in words(answer)]
    final = chunk({"role": "assistant"}, finish_reason="stop")
    final.update(usage=reply["usage"], custom_outputs=reply["custom_outputs"])
    return StreamPlan([*events, final], first_answer_event=1)


def chat_agent_events(reply: dict[str, Any]) -> StreamPlan:
    *steps, answer = reply["messages"]
    events = [{"delta": message} for message in steps]
    events += [
        {"delta": {"role": "assistant", "content": piece, "id": answer["id"]}}
        for piece in words(answer["content"])
    ]
    final = {
        "delta": {"role": "assistant", "content": "", "id": answer["id"]},
        "finish_reason": "stop",
        "custom_outputs": reply["custom_outputs"],
        "usage": reply["usage"],
    }
    return StreamPlan([*events, final], first_answer_event=len(steps))


def responses_events(reply: dict[str, Any]) -> StreamPlan:
    *steps, message = reply["output"]
    events = [{"type": "response.output_item.done", "item": item} for item in steps]
    text = message["content"][0]["text"]
    events += [
        {"type": "response.output_text.delta", "item_id": message["id"], "delta": piece}
        for piece in words(text)
    ]
    done = {"type": "response.output_item.done", "item": message}
    done["custom_outputs"] = reply["custom_outputs"]
    return StreamPlan([*events, done], first_answer_event=len(steps))


def legacy_events(reply: dict[str, Any]) -> StreamPlan:
    # ChainCompletionChunk (mlflow.models.rag_signatures): {index, delta, finish_reason}.
    events = [
        {"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}
        for piece in words(reply["content"])
    ]
    final = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
    return StreamPlan([*events, final], first_answer_event=0)


EVENT_BUILDERS: dict[AgentSchema, Callable[[dict[str, Any]], StreamPlan]] = {
    AgentSchema.CHAT_COMPLETIONS: chat_completions_events,
    AgentSchema.CHAT_AGENT: chat_agent_events,
    AgentSchema.RESPONSES: responses_events,
    AgentSchema.LEGACY: legacy_events,
}


def error_event(schema: AgentSchema, message: str) -> dict[str, Any]:
    if schema == AgentSchema.RESPONSES:
        return {"type": "error", "message": message}  # ResponseErrorEvent
    return {"error": {"message": message}}


def planned_events(
    schema: AgentSchema,
    reply: dict[str, Any],
    request_id: str,
    trace: dict[str, Any] | None,
    stream_error: str | None,
) -> list[dict[str, Any]]:
    plan = EVENT_BUILDERS[schema](reply)
    events = plan.events
    events[0]["databricks_output"] = {"databricks_request_id": request_id}
    if trace is not None:
        events[-1]["databricks_output"] = {"databricks_request_id": request_id, "trace": trace}
    if stream_error is not None:
        cut = min(plan.first_answer_event + ANSWER_EVENTS_BEFORE_ERROR, len(events) - 1)
        events = [*events[:cut], error_event(schema, stream_error)]
    return events


def sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"


async def sse_body(
    events: list[dict[str, Any]], delay_s: float, cut_after: int | None
) -> AsyncIterator[str]:
    for sent, event in enumerate(events):
        if sent == cut_after:
            raise SimulatedStreamCut(f"simulate.cut_after_chunks={cut_after}")
        if sent and delay_s > 0:
            await asyncio.sleep(delay_s)
        yield sse(event)
    if cut_after is not None:  # asked to cut after more events than there were: no [DONE]
        raise SimulatedStreamCut(f"simulate.cut_after_chunks={cut_after}")
    yield DONE


def stream_response(
    schema: AgentSchema,
    reply: dict[str, Any],
    request_id: str,
    trace: dict[str, Any] | None,
    delay_ms: int,
    simulate: Simulation,
) -> StreamingResponse:
    """The reply as an event stream; `trace` is None unless return_trace was asked for."""
    events = planned_events(schema, reply, request_id, trace, simulate.stream_error)
    body = sse_body(events, delay_ms / 1000, simulate.cut_after_chunks)
    headers = {**SSE_HEADERS, "x-request-id": request_id}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


TOO_DEEP_LEVELS = 5000


def too_deep_reply(request_id: str) -> str:
    """A chat completion whose custom_outputs nest 5,000 lists deep: valid JSON that a decoder
    recursing per level (Python's ~1000) cannot read. Written as text: json.dumps recurses too."""
    nested = "[" * TOO_DEEP_LEVELS + "]" * TOO_DEEP_LEVELS
    return (
        '{"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", '
        f'"content": "deep"}}}}], "custom_outputs": {{"nested": {nested}}}, '
        f'"databricks_output": {{"databricks_request_id": {json.dumps(request_id)}}}}}'
    )


async def _malformed_body(kind: str, request_id: str) -> AsyncIterator[str]:
    if kind == "not_json":
        yield "data: <html><body>upstream hiccup: this is not JSON</body></html>\n\n"
    elif kind == "too_deep":
        yield f"data: {too_deep_reply(request_id)}\n\n"
    else:
        yield sse(
            {
                "result": "this event has none of the schema's fields",
                "databricks_output": {"databricks_request_id": request_id},
            }
        )
    yield DONE


def malformed_stream_response(kind: str, request_id: str) -> StreamingResponse:
    """A 200 event stream a client cannot use: the streaming form of malformed replies."""
    headers = {**SSE_HEADERS, "x-request-id": request_id}
    body = _malformed_body(kind, request_id)
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)

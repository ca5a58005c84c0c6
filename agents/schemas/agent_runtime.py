"""Databricks Agent Runtime (`DurableAgentServer`, databricks-agentbricks 0.7.0): the invocation
API at `/api/invocations` (README "Databricks Agent Runtime" cites the docs).

Request {id, session_id, input, stream?, background?}: `input` is the agent's own ("opaque")
payload; the Agent Bricks templates read `input.messages` (and `input.model`), so the turn's
messages go there, with `custom_inputs` beside them. The server refuses any other top-level field.
The answer is the invocation's state {id, status, output}: `output` is whatever the agent
returned; the templates return {output: [chat messages], status}, and any body in a schema we
know (ResponsesAgent, ChatAgent, chat completions) or {answer | content | text} is read too.
Stream events are the agent's own, each SSE frame numbered (`id: N`): the templates emit
{type: "delta", content, id} and {type: "message", message}; the runtime adds `run.*` events.
"""

import json
from typing import Any

from agents.schemas.base import (
    Adapter,
    AgentReply,
    AgentReplyError,
    AgentStreamError,
    ItemAdded,
    MessageTexts,
    ReplyFacts,
    StreamAssembler,
    StreamEvent,
    TextDelta,
    checked_messages,
    error_message,
    require_dict,
    text_of,
    tool_call_item,
    tool_result_item,
)

TEXT_KEYS = ("answer", "content", "text")


def _message_items(message: dict) -> list[dict]:
    if message.get("role") == "tool":
        return [tool_result_item("", str(message.get("name") or ""), message.get("content"))]
    items = []
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            raise AgentReplyError("a message's tool call is not a JSON object")
        function = call.get("function") if isinstance(call.get("function"), dict) else call
        arguments = function.get("arguments", function.get("args"))
        items.append(
            tool_call_item(
                str(call.get("id") or ""),
                str(function.get("name") or ""),
                arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
        )
    return items


def _message_text(message: dict) -> str:
    if message.get("role") not in (None, "assistant", "ai"):
        return ""
    try:
        return text_of(message.get("content"))
    except AgentReplyError:
        return ""  # reasoning and other structured parts: not the answer's text


def read_messages(messages: list) -> tuple[str, list[dict]]:
    texts, items = MessageTexts(), []
    for position, message in enumerate(messages):
        message = require_dict(message, "a message of the answer")
        texts.append(position, _message_text(message))
        items.extend(_message_items(message))
    return texts.text(), items


def read_output(output: Any, facts: ReplyFacts) -> tuple[str, list[dict], str]:
    """The agent's output as (text, display items, schema it was in)."""
    from agents.schemas import adapter_for, detect_schema  # the package imports this module

    if isinstance(output, str):
        return output, [], "agent_runtime"
    if isinstance(output, list):
        return (*read_messages(output), "agent_runtime")
    output = require_dict(output, "the agent's `output`")
    facts.absorb(output)
    metadata = output.get("metadata")
    if isinstance(metadata, dict):
        facts.keep_trace_id(metadata.get("trace_id"))
    inner = output.get("output")
    if isinstance(inner, list) and all(
        isinstance(item, dict) and "role" in item and "type" not in item for item in inner
    ):
        return (*read_messages(inner), "agent_runtime")
    schema = detect_schema(output)
    if schema is not None and schema != "legacy_split":
        reply = adapter_for(schema).parse_reply(output)
        return reply.text, reply.items, schema
    for key in TEXT_KEYS:
        if isinstance(output.get(key), str):
            return output[key], [], "agent_runtime"
    raise AgentReplyError(
        "the invocation's `output` is in no shape this app knows "
        "(expected chat messages, a known agent schema, or `answer`)"
    )


class AgentRuntimeAssembler(StreamAssembler):
    """The stream shows the answer as it is written; the authoritative answer is the
    invocation's output, read when the run has ended (agents.background)."""

    schema = "agent_runtime"

    def __init__(self) -> None:
        super().__init__()
        self.texts = MessageTexts()
        self.items: list[dict] = []
        self.finished = False

    def feed(self, chunk: Any) -> list[StreamEvent]:
        # Not the base's absorb: an agent's own event may carry an `error` that is its content.
        return self._feed(require_dict(chunk, "a stream event"))

    def _feed(self, chunk: dict) -> list[StreamEvent]:
        kind = chunk.get("type")
        if kind in ("run.completed", "response.completed"):
            self.finished = True
        elif kind in ("run.failed", "error"):
            self.finished = True
            raise AgentStreamError(error_message(chunk.get("error") or "the run failed"))
        elif kind == "delta" and isinstance(chunk.get("content"), str):
            piece = self.texts.append(chunk.get("id") or "", chunk["content"])
            return [TextDelta(piece)] if piece else []
        elif kind == "message" and isinstance(chunk.get("message"), dict):
            message = chunk["message"]
            new = _message_items(message)
            self.items.extend(new)
            return [ItemAdded(item) for item in new]
        return []

    def _assembled(self) -> tuple[str, list[dict]]:
        return self.texts.text(), self.items


class AgentRuntimeAdapter(Adapter):
    schema = "agent_runtime"
    assembler_class = AgentRuntimeAssembler

    def build_request(
        self,
        *,
        messages: list[dict],
        custom_inputs: dict,
        conversation_id: str,
        user_id: str,
        stream: bool,
        databricks_options: bool,
        model: str = "",
    ) -> dict:
        agent_input: dict[str, Any] = {"messages": checked_messages(messages)}
        if custom_inputs:
            agent_input["custom_inputs"] = custom_inputs
        if model:
            agent_input["model"] = model
        # session_id: the runtime runs one session's invocations in order, and the templates
        # keep the conversation's state under it.
        body: dict[str, Any] = {"session_id": conversation_id, "input": agent_input}
        if stream:
            body["stream"] = True
        return body

    def parse_reply(self, body: Any) -> AgentReply:
        body = require_dict(body, "the answer")
        status = body.get("status")
        if status == "failed":
            raise AgentReplyError(f"The agent's run failed: {error_message(body.get('error'))}")
        if status != "completed" or "output" not in body:
            raise AgentReplyError(f"the invocation is {status!r}, not completed with an output")
        facts = ReplyFacts()
        text, items, schema = read_output(body["output"], facts)
        reply = facts.reply(text, items, schema)
        return reply

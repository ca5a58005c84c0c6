"""Chat-completions agents (task agent/v1/chat, llm/v1/chat) and OpenAI-compatible endpoints.

Request {messages, ...}; reply {choices: [{message}]}; stream chunks {choices: [{delta}]}
(protocol.md §1.2).
"""

import json
from typing import Any

from agents.schemas.base import (
    Adapter,
    AgentReplyError,
    ItemAdded,
    StreamAssembler,
    StreamEvent,
    TextDelta,
    openai_tool_call_item,
    optional_str,
    require_dict,
    text_of,
)


def first_choice(body: dict, what: str) -> dict | None:
    """choices[0], or None for a chunk with no choices (usage-only chunks have `choices: []`)."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise AgentReplyError(f"{what} has no `choices` list (expected a chat completion)")
    if not choices:
        return None
    return require_dict(choices[0], f"the first choice of {what}")


def read_chat_completion(body: dict) -> tuple[str, list[dict]]:
    choice = first_choice(body, "the answer")
    if choice is None:
        raise AgentReplyError("the answer's `choices` is empty")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise AgentReplyError("the first choice has no `message`")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise AgentReplyError("the message's `tool_calls` is not a list")
    return text_of(message.get("content")), [openai_tool_call_item(call) for call in tool_calls]


class ToolCallCollector:
    """Streamed tool calls arrive whole (MLflow) or as OpenAI fragments keyed by `index`."""

    def __init__(self) -> None:
        self._calls: dict[Any, dict] = {}
        self._announced: set[Any] = set()

    def add(self, fragments: Any) -> None:
        if not isinstance(fragments, list):
            raise AgentReplyError("a stream chunk's `tool_calls` is not a list")
        for fragment in fragments:
            fragment = require_dict(fragment, "a streamed tool call")
            function = require_dict(fragment.get("function") or {}, "a tool call's `function`")
            call_id = optional_str(fragment.get("id"), "a tool call's `id`")
            index = fragment.get("index")
            key = index if isinstance(index, int) else call_id or len(self._calls)
            call = self._calls.setdefault(key, {"id": "", "name": "", "arguments": ""})
            call["id"] = call_id or call["id"]
            call["name"] += optional_str(function.get("name"), "a tool call's function name")
            arguments = function.get("arguments")
            if isinstance(arguments, dict):  # some servers send parsed arguments
                call["arguments"] = json.dumps(arguments)
            else:
                call["arguments"] += optional_str(arguments, "a tool call's arguments")

    def announce(self) -> list[StreamEvent]:
        """The calls collected so far, each once: called when the choice finishes."""
        fresh = [key for key in self._calls if key not in self._announced]
        self._announced.update(fresh)
        return [ItemAdded(self._item(self._calls[key])) for key in fresh]

    def items(self) -> list[dict]:
        return [self._item(call) for call in self._calls.values()]

    @staticmethod
    def _item(call: dict) -> dict:
        return {"kind": "tool_call", **call}


class ChatCompletionsAssembler(StreamAssembler):
    schema = "chat_completions"

    def __init__(self) -> None:
        super().__init__()
        self._text: list[str] = []
        self._tool_calls = ToolCallCollector()

    def _feed(self, chunk: dict) -> list[StreamEvent]:
        if "choices" not in chunk:
            return []
        choice = first_choice(chunk, "a stream chunk")
        if choice is None:
            return []
        # Some servers put the whole message in the last chunk instead of a delta.
        delta = choice.get("delta", choice.get("message"))
        events: list[StreamEvent] = []
        if delta is not None:
            delta = require_dict(delta, "a stream chunk's `delta`")
            piece = text_of(delta.get("content"), "a stream chunk's content")
            if piece:
                self._text.append(piece)
                events.append(TextDelta(piece))
            if delta.get("tool_calls") is not None:
                self._tool_calls.add(delta["tool_calls"])
        if choice.get("finish_reason") is not None:
            events.extend(self._tool_calls.announce())
        return events

    def _assembled(self) -> tuple[str, list[dict]]:
        return "".join(self._text), self._tool_calls.items()


class ChatCompletionsAdapter(Adapter):
    schema = "chat_completions"
    assembler_class = ChatCompletionsAssembler

    def _payload(self, messages: list[dict], *, conversation_id: str, user_id: str) -> dict:
        return {"messages": messages}

    def _read(self, body: dict) -> tuple[str, list[dict]]:
        return read_chat_completion(body)

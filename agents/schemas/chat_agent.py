"""ChatAgent agents (task agent/v2/chat, mlflow.types.agent; protocol.md §1.3).

Request {messages, context: {conversation_id, user_id}}; reply {messages: [...]} where
assistant messages carry text or `tool_calls` and `role: tool` messages carry tool results;
stream chunks {delta: message}, aggregated by the message `id`.
"""

from typing import Any

from agents.schemas.base import (
    Adapter,
    AgentReplyError,
    ItemAdded,
    MessageTexts,
    StreamAssembler,
    StreamEvent,
    TextDelta,
    openai_tool_call_item,
    optional_str,
    require_dict,
    text_of,
    tool_result_item,
)


def _role(message: dict, what: str) -> str:
    role = message.get("role")
    if not isinstance(role, str):
        raise AgentReplyError(f"{what} has no `role`")
    return role


def _tool_calls(message: dict) -> list[dict]:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise AgentReplyError("a message's `tool_calls` is not a list")
    return [openai_tool_call_item(call) for call in calls]


def _tool_result(message: dict, output: Any) -> dict:
    return tool_result_item(
        optional_str(message.get("tool_call_id"), "a tool message's `tool_call_id`"),
        optional_str(message.get("name"), "a tool message's `name`"),
        "" if output is None else output,
    )


def read_chat_agent_messages(body: dict) -> tuple[str, list[dict]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise AgentReplyError("the answer has no `messages` (expected a ChatAgent response)")
    texts, items = MessageTexts(), []
    for position, message in enumerate(messages):
        message = require_dict(message, "a message of the answer")
        role = _role(message, "a message of the answer")
        if role == "tool":
            items.append(_tool_result(message, message.get("content")))
        elif role == "assistant":
            texts.append(position, text_of(message.get("content")))
            items.extend(_tool_calls(message))
    return texts.text(), items


class _StreamedMessage:
    def __init__(self, role: str) -> None:
        self.role = role
        self.content = ""
        self.name: str = ""
        self.tool_call_id: str = ""
        self.tool_calls: dict[str, dict] = {}

    def items(self) -> list[dict]:
        if self.role == "tool":
            message = {"name": self.name, "tool_call_id": self.tool_call_id}
            return [_tool_result(message, self.content)]
        return list(self.tool_calls.values())


class ChatAgentAssembler(StreamAssembler):
    """Deltas with the same `id` build one message. A message's tool calls or tool result are
    announced (ItemAdded) when it ends: the next message id starts or a finish_reason arrives;
    a message still open when the stream stops has its items only in reply().items."""

    schema = "chat_agent"

    def __init__(self) -> None:
        super().__init__()
        self._messages: dict[Any, _StreamedMessage] = {}
        self._texts = MessageTexts()
        self._open: Any = None
        self._announced: set[Any] = set()

    def _feed(self, chunk: dict) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if chunk.get("delta") is not None:
            events.extend(self._add_delta(require_dict(chunk["delta"], "a stream chunk's `delta`")))
        if chunk.get("finish_reason") is not None:
            events.extend(self._close())
        return events

    def _add_delta(self, delta: dict) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        # A delta without an id continues the open message (ChatAgentChunk requires one).
        message_id = optional_str(delta.get("id"), "a delta's `id`") or self._open
        if message_id != self._open:
            events.extend(self._close())
            self._open = message_id
        message = self._messages.get(message_id)
        if message is None:
            role = _role(delta, "the first delta of a streamed message")
            message = self._messages[message_id] = _StreamedMessage(role)
        piece = text_of(delta.get("content"), "a stream chunk's content")
        message.content += piece
        if message.role == "assistant":
            streamed = self._texts.append(message_id, piece)
            if streamed:
                events.append(TextDelta(streamed))
        message.name = optional_str(delta.get("name"), "a tool message's `name`") or message.name
        message.tool_call_id = (
            optional_str(delta.get("tool_call_id"), "a tool message's `tool_call_id`")
            or message.tool_call_id
        )
        for call in _tool_calls(delta):
            message.tool_calls[call["id"] or str(len(message.tool_calls))] = call
        return events

    def _close(self) -> list[StreamEvent]:
        message = self._messages.get(self._open)
        if message is None or self._open in self._announced:
            return []
        self._announced.add(self._open)
        return [ItemAdded(item) for item in message.items()]

    def _assembled(self) -> tuple[str, list[dict]]:
        items = [item for message in self._messages.values() for item in message.items()]
        return self._texts.text(), items


class ChatAgentAdapter(Adapter):
    schema = "chat_agent"
    assembler_class = ChatAgentAssembler

    def _payload(self, messages: list[dict], *, conversation_id: str, user_id: str) -> dict:
        return {
            "messages": messages,
            "context": {"conversation_id": conversation_id, "user_id": user_id},
        }

    def _read(self, body: dict) -> tuple[str, list[dict]]:
        return read_chat_agent_messages(body)

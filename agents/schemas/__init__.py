"""One adapter per agent schema: the request body, the reply and the stream (protocol.md §1, §2).

Every adapter returns the same AgentReply and the same stream events, so the rest of the app
never looks at a schema. The schema names are the values of agents.models.AgentSchema; this
package does not import Django so that it stays a plain protocol library.
"""

from typing import Any

from agents.schemas.agent_runtime import AgentRuntimeAdapter
from agents.schemas.base import (
    Adapter,
    AgentReply,
    AgentReplyError,
    AgentStreamError,
    ItemAdded,
    StreamAssembler,
    StreamEvent,
    TextDelta,
    require_dict,
)
from agents.schemas.chat_agent import ChatAgentAdapter
from agents.schemas.chat_completions import ChatCompletionsAdapter
from agents.schemas.legacy import LegacySplitAdapter
from agents.schemas.responses import ResponsesAdapter

__all__ = [
    "Adapter",
    "AgentReply",
    "AgentReplyError",
    "AgentRuntimeAdapter",
    "AgentStreamError",
    "AutoAdapter",
    "ChatAgentAdapter",
    "ChatCompletionsAdapter",
    "ItemAdded",
    "LegacySplitAdapter",
    "ResponsesAdapter",
    "StreamAssembler",
    "StreamEvent",
    "TextDelta",
    "adapter_for",
    "detect_schema",
    "schema_for_task",
]

# ServingEndpoint.task -> schema (protocol.md §1.1); foundation-model chat speaks chat completions.
_SCHEMA_FOR_TASK = {
    "agent/v1/chat": "chat_completions",
    "agent/v2/chat": "chat_agent",
    "agent/v1/responses": "responses",
    "llm/v1/chat": "chat_completions",
}


def schema_for_task(task: str | None) -> str | None:
    return _SCHEMA_FOR_TASK.get(task) if isinstance(task, str) else None


def detect_schema(body: Any) -> str | None:
    """The schema a non-streamed reply is written in, or None when it is none we know."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("choices"), list):
        return "chat_completions"
    if isinstance(body.get("messages"), list):
        return "chat_agent"
    if isinstance(body.get("output"), list) or body.get("object") == "response":
        return "responses"
    if isinstance(body.get("content"), str):
        return "legacy_split"
    return None


def _detect_chunk_schema(chunk: Any) -> str | None:
    """The schema of one stream chunk; None for envelope-only chunks such as {"trace_id"}."""
    if not isinstance(chunk, dict):
        return None
    if "choices" in chunk:
        return "chat_completions"
    kind = chunk.get("type")
    if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
        return "responses"
    delta = chunk.get("delta")
    if isinstance(delta, dict):
        # ChatAgentChunk deltas carry a message id; ChainCompletionChunk deltas do not.
        return "chat_agent" if "id" in delta else "legacy_split"
    if isinstance(chunk.get("content"), str):
        return "legacy_split"
    return None


class AutoAssembler(StreamAssembler):
    """Reads envelope chunks itself until one has a known shape, then hands everything over."""

    schema = "auto"

    def __init__(self) -> None:
        super().__init__()
        self._delegate: StreamAssembler | None = None

    def feed(self, chunk: Any) -> list[StreamEvent]:
        if self._delegate is None:
            schema = _detect_chunk_schema(chunk)
            if schema is None:
                return super().feed(chunk)
            self._delegate = adapter_for(schema).assembler()
            self._delegate.facts = self.facts  # keep what envelope chunks already said
        return self._delegate.feed(chunk)

    def reply(self) -> AgentReply:
        return self._delegate.reply() if self._delegate else super().reply()


class AutoAdapter(ChatCompletionsAdapter):
    """Until a schema is known: ask in chat-completions form, read any known reply shape."""

    schema = "auto"
    assembler_class = AutoAssembler

    def parse_reply(self, body: Any) -> AgentReply:
        schema = detect_schema(require_dict(body, "the answer"))
        if schema is None:
            if body.get("error") is not None:
                return super().parse_reply(body)  # raises with the agent's own message
            raise AgentReplyError(
                "the answer is in no agent schema this app knows "
                "(expected `choices`, `messages`, `output` or `content`)"
            )
        return adapter_for(schema).parse_reply(body)


_ADAPTERS: dict[str, type[Adapter]] = {
    "auto": AutoAdapter,
    "chat_completions": ChatCompletionsAdapter,
    "chat_agent": ChatAgentAdapter,
    "responses": ResponsesAdapter,
    "legacy_split": LegacySplitAdapter,
}


def adapter_for(schema: str) -> Adapter:
    try:
        return _ADAPTERS[schema]()
    except (KeyError, TypeError):
        known = ", ".join(_ADAPTERS)
        message = f"Unknown agent schema {schema!r}; expected one of: {known}."
        raise AgentReplyError(message) from None

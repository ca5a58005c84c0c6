"""Deprecated {query, history} -> {content} agents (mlflow.models.rag_signatures; protocol.md §1.5).

Databricks itself also accepts a chat completion from these agents, so the reader does too.
Streams: ChainCompletionChunk {index, delta: {role, content}, finish_reason}, chat-completion
chunks, or bare {"content": "..."} pieces.
"""

from typing import Any

from agents.schemas.base import (
    Adapter,
    AgentReply,
    AgentReplyError,
    StreamEvent,
    TextDelta,
    require_dict,
    text_of,
)
from agents.schemas.chat_completions import ChatCompletionsAdapter, ChatCompletionsAssembler


class LegacySplitAssembler(ChatCompletionsAssembler):
    schema = "legacy_split"

    def _feed(self, chunk: dict) -> list[StreamEvent]:
        if "choices" in chunk:
            return super()._feed(chunk)
        if chunk.get("delta") is not None:
            delta = require_dict(chunk["delta"], "a stream chunk's `delta`")
            piece = text_of(delta.get("content"), "a stream chunk's content")
        elif "content" in chunk:
            piece = text_of(chunk["content"], "a stream chunk's `content`")
        else:
            return []
        if not piece:
            return []
        self._text.append(piece)
        return [TextDelta(piece)]


class LegacySplitAdapter(Adapter):
    schema = "legacy_split"
    assembler_class = LegacySplitAssembler

    def _payload(self, messages: list[dict], *, conversation_id: str, user_id: str) -> dict:
        if messages[-1]["role"] != "user":
            raise ValueError("a {query, history} request must end with the user's message")
        return {"query": messages[-1]["content"], "history": messages[:-1]}

    def parse_reply(self, body: Any) -> AgentReply:
        if isinstance(body, dict) and "content" not in body and "choices" in body:
            return ChatCompletionsAdapter().parse_reply(body)
        return super().parse_reply(body)

    def _read(self, body: dict) -> tuple[str, list[dict]]:
        if not isinstance(body.get("content"), str):
            raise AgentReplyError("the answer has no `content` string (expected {content})")
        return body["content"], []

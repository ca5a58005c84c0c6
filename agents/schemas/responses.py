"""ResponsesAgent agents (task agent/v1/responses, mlflow.types.responses; protocol.md §1.4).

Request {input: [{type: message, role, content}], context}; reply {output: [items]} with
`message`, `function_call`, `function_call_output` and `reasoning` items; stream events
`response.output_text.delta`, `response.output_item.done`, `response.completed`, `error`.
"""

from typing import Any

from agents.schemas.base import (
    TEXT_SEPARATOR,
    Adapter,
    AgentReplyError,
    AgentStreamError,
    ItemAdded,
    MessageTexts,
    StreamAssembler,
    StreamEvent,
    TextDelta,
    error_message,
    optional_str,
    require_dict,
    text_of,
    tool_call_item,
    tool_result_item,
)


def _reasoning_text(item: dict) -> str:
    summary = item.get("summary") or []
    if not isinstance(summary, list):
        raise AgentReplyError("a reasoning item's `summary` is not a list")
    parts = [text_of([part], "a reasoning summary") for part in summary]
    return TEXT_SEPARATOR.join(part for part in parts if part)


class OutputCollector:
    """Output items in order; a later final version of an item replaces the earlier one."""

    def __init__(self) -> None:
        self.texts = MessageTexts()
        self._items: dict[Any, dict] = {}
        self._tool_names: dict[str, str] = {}
        self._unnamed = 0

    def add_delta(self, item_id: str, piece: str) -> list[StreamEvent]:
        streamed = self.texts.append(("message", item_id), piece)
        return [TextDelta(streamed)] if streamed else []

    def take(self, item: Any) -> list[StreamEvent]:
        """An item in its final form: a reply's output, an output_item.done, response.completed."""
        item = require_dict(item, "an output item")
        kind = item.get("type")
        identity = optional_str(item.get("id"), "an output item's `id`")
        if kind == "message":
            if not isinstance(item.get("content"), list):
                raise AgentReplyError("a message item has no `content` list")
            return self._take_message(identity, text_of(item["content"], "a message item"))
        display = self._display(kind, item)
        if display is None:
            return []  # item types with nothing to show people (e.g. MCP approvals)
        call_id = display.get("id") if kind == "function_call" else display.get("call_id")
        key = (kind, identity or call_id or len(self._items))
        is_new = key not in self._items
        self._items[key] = display
        return [ItemAdded(display)] if is_new else []

    def _take_message(self, identity: str, text: str) -> list[StreamEvent]:
        key = ("message", identity)
        if not identity and not self.texts.has(key):
            self._unnamed += 1  # messages without an id are each their own message
            key = ("message", "", self._unnamed)
        if self.texts.has(key):
            self.texts.replace(key, text)
            return []
        streamed = self.texts.append(key, text)
        return [TextDelta(streamed)] if streamed else []

    def _display(self, kind: Any, item: dict) -> dict | None:
        if kind == "function_call":
            call_id = optional_str(item.get("call_id"), "a function call's `call_id`")
            name = optional_str(item.get("name"), "a function call's `name`")
            self._tool_names[call_id] = name
            arguments = optional_str(item.get("arguments"), "a function call's `arguments`")
            return tool_call_item(call_id, name, arguments)
        if kind == "function_call_output":
            call_id = optional_str(item.get("call_id"), "a function call output's `call_id`")
            output = item.get("output")
            return tool_result_item(
                call_id, self._tool_names.get(call_id, ""), "" if output is None else output
            )
        if kind == "reasoning":
            return {"kind": "reasoning", "text": _reasoning_text(item)}
        if not isinstance(kind, str):
            raise AgentReplyError("an output item has no `type`")
        return None

    def assembled(self) -> tuple[str, list[dict]]:
        return self.texts.text(), list(self._items.values())


def read_responses_output(body: dict) -> tuple[str, list[dict]]:
    output = body.get("output")
    if not isinstance(output, list) or not output:
        raise AgentReplyError("the answer has no `output` items (expected a Responses answer)")
    collector = OutputCollector()
    for item in output:
        collector.take(item)
    return collector.assembled()


class ResponsesAssembler(StreamAssembler):
    schema = "responses"

    def __init__(self) -> None:
        super().__init__()
        self._output = OutputCollector()

    def _feed(self, chunk: dict) -> list[StreamEvent]:
        kind = chunk.get("type")
        if kind == "response.output_text.delta":
            item_id = optional_str(chunk.get("item_id"), "a text delta's `item_id`")
            if not isinstance(chunk.get("delta"), str):
                raise AgentReplyError("a text delta has no `delta` string")
            return self._output.add_delta(item_id, chunk["delta"])
        if kind == "response.output_item.done":
            return self._output.take(chunk.get("item"))
        if kind == "response.completed":
            return self._completed(require_dict(chunk.get("response"), "the completed response"))
        if kind == "error":
            raise AgentStreamError(error_message(chunk))
        if kind == "response.failed":
            response = require_dict(chunk.get("response"), "the failed response")
            raise AgentStreamError(error_message(response.get("error") or "the response failed"))
        if kind is not None and not isinstance(kind, str):
            raise AgentReplyError("a stream event's `type` is not a string")
        return []  # response.created, content_part.added and the like

    def _completed(self, response: dict) -> list[StreamEvent]:
        self.facts.keep_custom_outputs(response.get("custom_outputs"))
        output = response.get("output") or []
        if not isinstance(output, list):
            raise AgentReplyError("the completed response's `output` is not a list")
        return [event for item in output for event in self._output.take(item)]

    def _assembled(self) -> tuple[str, list[dict]]:
        return self._output.assembled()


class ResponsesAdapter(Adapter):
    schema = "responses"
    assembler_class = ResponsesAssembler

    def _payload(self, messages: list[dict], *, conversation_id: str, user_id: str) -> dict:
        return {
            "input": [{"type": "message", **message} for message in messages],
            "context": {"conversation_id": conversation_id, "user_id": user_id},
        }

    def _read(self, body: dict) -> tuple[str, list[dict]]:
        return read_responses_output(body)

"""Request bodies of the four agent schemas, checked and normalised to one ChatRequest.

Each schema's parser turns its body into chat-completions `{role, content}` messages, the shape
the demo LLM span records; what the schemas share (custom_inputs, databricks_options, `stream`,
the simulate hooks) is checked once, in `parse_turn_request`.
"""

from collections.abc import Callable
from typing import Any

from demo_agent.schemas import AgentSchema
from demo_agent.validation import (
    ChatRequest,
    apply_context,
    apply_custom_inputs,
    apply_databricks_options,
    bad,
    check_messages,
    message_text,
)

RESPONSES_ROLES = ("user", "assistant", "system", "developer")
# Items an earlier Responses turn put out; a client sends them back as history, the demo
# agent ignores them (mlflow.types.responses_helpers validates the first six).
RESPONSES_OUTPUT_ITEM_TYPES = frozenset(
    {
        "function_call",
        "function_call_output",
        "reasoning",
        "mcp_approval_request",
        "mcp_approval_response",
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "web_search_call",
    }
)
LEGACY_ROLES = ("system", "user", "assistant")


def chat_completions_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return check_messages(body.get("messages"))


def chat_agent_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = check_messages(body.get("messages"))
    for i, message in enumerate(messages):
        # ChatAgentMessage.content is a plain string (mlflow.types.agent), never parts.
        if isinstance(message.get("content"), list):
            raise bad(f"messages[{i}].content must be a string for a ChatAgent endpoint")
        if message["role"] == "tool" and not (message.get("name") and message.get("tool_call_id")):
            raise bad(f"messages[{i}] has role `tool` and so needs `name` and `tool_call_id`")
    return messages


def _responses_message(item: dict[str, Any], where: str) -> dict[str, Any]:
    if item.get("role") not in RESPONSES_ROLES:
        raise bad(f"{where}.role must be one of {', '.join(RESPONSES_ROLES)}")
    content = item.get("content")
    if isinstance(content, list):
        for n, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad(f"{where}.content[{n}] must be an object with a `type`")
            if part["type"] in ("input_text", "output_text") and not isinstance(
                part.get("text"), str
            ):
                raise bad(f"{where}.content[{n}] is {part['type']} and needs a string `text`")
    elif not isinstance(content, str):
        raise bad(f'{where}.content must be a string or a list of {{"type": "input_text"}} parts')
    return {"role": item["role"], "content": message_text(content)}


def responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input")
    if not isinstance(items, list) or not items:
        raise bad("`input` must be a non-empty list of message items {role, content}")
    messages = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"input[{i}] must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_responses_message(item, f"input[{i}]"))
        elif kind not in RESPONSES_OUTPUT_ITEM_TYPES:
            known = ", ".join(sorted({"message", *RESPONSES_OUTPUT_ITEM_TYPES}))
            raise bad(f"input[{i}].type {kind!r} is not an input item type; known: {known}")
    return messages


def legacy_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`{query, history}` becomes `history + [user query]`, as Databricks itself normalises it
    (protocol.md §1.5)."""
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise bad("`query` must be a non-empty string (legacy {query, history} endpoint)")
    history = body.get("history")
    if history is None or history == []:
        return [{"role": "user", "content": query}]
    if not isinstance(history, list):
        raise bad("`history` must be a list of {role, content} messages")
    for i, message in enumerate(history):
        if not isinstance(message, dict) or message.get("role") not in LEGACY_ROLES:
            raise bad(f"history[{i}] must be {{role, content}} with role in {LEGACY_ROLES}")
        if not isinstance(message.get("content"), str):
            raise bad(f"history[{i}].content must be a string")
    return [*history, {"role": "user", "content": query}]


MESSAGE_PARSERS: dict[AgentSchema, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    AgentSchema.CHAT_COMPLETIONS: chat_completions_messages,
    AgentSchema.CHAT_AGENT: chat_agent_messages,
    AgentSchema.RESPONSES: responses_messages,
    AgentSchema.LEGACY: legacy_messages,
}


def parse_turn_request(body: dict[str, Any], schema: AgentSchema) -> ChatRequest:
    """Check a turn in `schema`'s request shape and normalise it; 400 on anything wrong."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad("`stream` must be true or false")
    messages = MESSAGE_PARSERS[schema](body)
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise bad("the conversation must contain at least one message with role `user`")
    request = ChatRequest(
        body=body,
        messages=messages,
        question=message_text(users[-1]["content"]),
        schema=schema,
        stream=bool(stream),
    )
    if schema in (AgentSchema.CHAT_AGENT, AgentSchema.RESPONSES):
        apply_context(request, body.get("context"))
    # After `context`: an explicit databricks_options.conversation_id wins.
    apply_databricks_options(request, body.get("databricks_options"))
    apply_custom_inputs(request, body.get("custom_inputs"))
    hooks = request.simulate.stream_hooks()
    if hooks and not request.stream:
        raise bad(f'custom_inputs.simulate.{hooks[0]} only applies to a "stream": true request')
    return request

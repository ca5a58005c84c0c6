"""Which of the four agent schemas an endpoint speaks, decided by its name.

One demo agent process stands in for endpoints of every flavour (protocol.md §1.2-1.5), so the
Review App's schema detection and its four request/reply paths can all be exercised against it.
"""

from enum import StrEnum


class AgentSchema(StrEnum):
    CHAT_COMPLETIONS = "chat_completions"  # ChatModel / OpenAI-compatible: {messages} -> choices
    CHAT_AGENT = "chat_agent"  # mlflow.types.agent: {messages, context} -> {messages}
    RESPONSES = "responses"  # mlflow.types.responses: {input} -> {output}
    LEGACY = "legacy"  # rag_signatures: {query, history} -> {content}


# What GET /api/2.0/serving-endpoints/{name} reports as `task`; legacy models had none.
TASKS: dict[AgentSchema, str | None] = {
    AgentSchema.CHAT_COMPLETIONS: "agent/v1/chat",
    AgentSchema.CHAT_AGENT: "agent/v2/chat",
    AgentSchema.RESPONSES: "agent/v1/responses",
    AgentSchema.LEGACY: None,
}

CHAT_AGENT_MARKERS = ("chat-agent", "chat_agent", "chatagent")


def schema_for_endpoint(name: str) -> AgentSchema:
    """First match wins, in this order: `responses`, a ChatAgent marker, `legacy`; anything else
    is chat completions, the schema every endpoint spoke before the others were added."""
    lowered = name.lower()
    if "responses" in lowered:
        return AgentSchema.RESPONSES
    if any(marker in lowered for marker in CHAT_AGENT_MARKERS):
        return AgentSchema.CHAT_AGENT
    if "legacy" in lowered:
        return AgentSchema.LEGACY
    return AgentSchema.CHAT_COMPLETIONS

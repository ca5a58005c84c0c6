"""Non-streamed replies in each schema, built with MLflow's own types (protocol.md §1.2-1.5).

The agent run is the same for every schema (retrieve, then the demo LLM); only the reply's
shape differs. ChatAgent and Responses replies show the retrieval as the tool call a real
tool-calling agent would have made (`search_docs`), so clients get tool messages to render.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from mlflow.types.agent import ChatAgentMessage, ChatAgentResponse
from mlflow.types.responses import (
    ResponsesAgentResponse,
    create_function_call_item,
    create_function_call_output_item,
    create_reasoning_item,
    create_text_output_item,
)

from demo_agent.schemas import AgentSchema
from demo_agent.validation import ChatRequest

TOOL_NAME = "search_docs"


@dataclass
class AgentTurn:
    """What one agent run produced, before it is put into a schema's reply."""

    request: ChatRequest
    documents: list[dict[str, Any]]  # MLflow Documents, as the retriever span outputs them
    completion: dict[str, Any]  # the demo LLM's chat.completion

    @property
    def answer(self) -> str:
        return self.completion["choices"][0]["message"]["content"]

    @property
    def custom_outputs(self) -> dict[str, Any]:
        return {
            "top_k": self.request.top_k,
            "style": self.request.style,
            "retrieved_chunk_ids": [d["metadata"]["chunk_id"] for d in self.documents],
        }

    def tool_arguments(self) -> str:
        return json.dumps({"query": self.request.question})

    def tool_output(self) -> str:
        """What `search_docs` "returned": which documents, not their text, to stay short."""
        return json.dumps(
            [
                {"chunk_id": d["metadata"]["chunk_id"], "doc_uri": d["metadata"]["doc_uri"]}
                for d in self.documents
            ]
        )


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def chat_completions_reply(turn: AgentTurn) -> dict[str, Any]:
    return {**turn.completion, "custom_outputs": turn.custom_outputs}


def chat_agent_reply(turn: AgentTurn) -> dict[str, Any]:
    call_id = _new_id("call_")
    messages = [
        ChatAgentMessage(
            role="assistant",
            id=_new_id("msg_"),
            tool_calls=[
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": turn.tool_arguments()},
                }
            ],
        ),
        ChatAgentMessage(
            role="tool",
            id=_new_id("msg_"),
            name=TOOL_NAME,
            tool_call_id=call_id,
            content=turn.tool_output(),
        ),
        ChatAgentMessage(role="assistant", id=_new_id("msg_"), content=turn.answer),
    ]
    response = ChatAgentResponse(
        messages=messages, custom_outputs=turn.custom_outputs, usage=turn.completion["usage"]
    )
    return response.model_dump(exclude_none=True)


def reasoning_summary(turn: AgentTurn) -> str:
    return (
        f"Searching the docs with {TOOL_NAME} for the question, then answering in the "
        f"{turn.request.style} style from the top {len(turn.documents)} result(s)."
    )


def responses_reply(turn: AgentTurn) -> dict[str, Any]:
    call_id = _new_id("call_")
    usage = turn.completion["usage"]
    response = ResponsesAgentResponse(
        id=_new_id("resp_"),
        output=[
            create_reasoning_item(_new_id("rs_"), reasoning_summary(turn)),
            create_function_call_item(_new_id("fc_"), call_id, TOOL_NAME, turn.tool_arguments()),
            create_function_call_output_item(call_id, turn.tool_output()),
            create_text_output_item(turn.answer, _new_id("msg_")),
        ],
        usage={
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        },
        custom_outputs=turn.custom_outputs,
    )
    return response.model_dump(exclude_none=True)


def legacy_reply(turn: AgentTurn) -> dict[str, Any]:
    # The shape of mlflow.models.rag_signatures.StringResponse, written out: constructing that
    # deprecated class prints a FutureWarning into the agent's log.
    return {"content": turn.answer}


REPLY_BUILDERS = {
    AgentSchema.CHAT_COMPLETIONS: chat_completions_reply,
    AgentSchema.CHAT_AGENT: chat_agent_reply,
    AgentSchema.RESPONSES: responses_reply,
    AgentSchema.LEGACY: legacy_reply,
}


def build_reply(turn: AgentTurn) -> dict[str, Any]:
    """The turn's reply in its request's schema, without `databricks_output`."""
    return REPLY_BUILDERS[turn.request.schema](turn)

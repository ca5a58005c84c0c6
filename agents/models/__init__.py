from agents.models.chat import Conversation, RequestLog, TurnKey
from agents.models.deployment import (
    AgentSchema,
    AuthKind,
    Deployment,
    EndpointKind,
    FeedbackSink,
    Health,
)

__all__ = [
    "AgentSchema",
    "AuthKind",
    "Conversation",
    "Deployment",
    "EndpointKind",
    "FeedbackSink",
    "Health",
    "RequestLog",
    "TurnKey",
]

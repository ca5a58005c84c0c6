from agents.models.access import AccessStamp
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
    "AccessStamp",
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

from agents.models.chat import Conversation, RequestLog
from agents.models.deployment import (
    AgentSchema,
    AuthKind,
    Deployment,
    FeedbackSink,
    Health,
)

__all__ = [
    "AgentSchema",
    "AuthKind",
    "Conversation",
    "Deployment",
    "FeedbackSink",
    "Health",
    "RequestLog",
]

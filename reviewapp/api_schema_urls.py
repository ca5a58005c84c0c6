"""The URLs the OpenAPI schema describes: those served, with the chat turn documented by
agents.chat_apis.ChatTurnDocumentation. The turn itself is served by an async view outside
DRF's dispatch (and by the lean path for tokens), which DRF's schema generator cannot read."""

from django.urls import path

from agents.chat_apis import ChatTurnDocumentation
from reviewapp.urls import urlpatterns as served

urlpatterns = [
    path("api/v1/deployments/<int:pk>/chat/", ChatTurnDocumentation.as_view()),
    *served,
]

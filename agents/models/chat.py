import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

from agents.models.deployment import Deployment

if TYPE_CHECKING:
    from agents.schemas import AgentReply


class Conversation(models.Model):
    """One user's multi-turn chat with one deployment; its id is the agent's conversation_id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="conversations"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # What the next turn sends as custom_inputs; each turn also records what it sent.
    custom_inputs = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "deployment", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.id}"


class RequestLog(models.Model):
    """One chat turn, in the Databricks request-log schema plus who, where and what failed.

    `request` is the turn's user message and `response` the assistant's text; the raw bodies are
    kept as sent and received (cut at REQUEST_LOG_MAX_BODY_BYTES, and then flagged).
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="requests")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Its column is the Databricks log's `conversation_id`: the id sent to the agent.
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="turns"
    )
    client_request_id = models.CharField(max_length=64, blank=True)
    databricks_request_id = models.CharField(max_length=128, unique=True)
    date = models.DateField()
    timestamp_ms = models.BigIntegerField()
    status_code = models.PositiveIntegerField()
    execution_time_ms = models.PositiveIntegerField()
    request = models.TextField(blank=True)
    response = models.TextField(blank=True)
    request_raw = models.TextField(blank=True)
    response_raw = models.TextField(blank=True)
    request_raw_truncated = models.BooleanField(default=False)
    response_raw_truncated = models.BooleanField(default=False)
    trace = models.JSONField(null=True)
    # The span tree's rows without the spans' inputs and outputs (agents.trace_outline): the
    # Trace tree opens from this and leaves `trace` (tens of MB for a big trace) unread.
    trace_outline = models.JSONField(null=True, editable=False)
    # MLflow AgentServer turns return only a trace id; the trace is read from the tracking
    # server when first shown (and kept in `trace`).
    mlflow_trace_id = models.CharField(max_length=128, blank=True)
    # Tool calls, tool results and reasoning the agent returned besides its answer, for display:
    # [{"kind": "tool_call" | "tool_result" | "reasoning", ...}] (agents/schemas).
    output_items = models.JSONField(default=list, blank=True)
    # A stream that was cut or stopped: `response` holds the partial answer and `error` why.
    incomplete = models.BooleanField(default=False)
    request_metadata = models.JSONField(default=dict)
    schema_version = models.CharField(max_length=16, default="1")
    custom_inputs = models.JSONField(default=dict)
    custom_outputs = models.JSONField(null=True)
    # A turn the agent answers in the background (Agent Runtime, LongRunningAgentServer): its run
    # id, kept from the moment the agent accepts it, so the answer is read back by it even after
    # the page is closed or this app restarts (agents/background/).
    agent_run_id = models.CharField(max_length=128, blank=True)
    # When the sweep last asked about the run (agents/background/collect.py): not again sooner
    # than BACKGROUND_RUN_CHECK_SECONDS, so a slow or unreachable agent cannot pile checks up.
    agent_run_checked_at = models.DateTimeField(null=True, blank=True)
    agent_run_state = models.CharField(
        max_length=8,
        choices=[("", "No background run"), ("running", "Running"), ("finished", "Finished")],
        blank=True,
        default="",
    )
    error = models.TextField(blank=True, help_text="Why the turn failed, in words; empty if not.")
    error_detail = models.TextField(blank=True, help_text="Status and body excerpt, for experts.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # The requests page reads newest first by the keyset (created_at, id), of all turns or of
        # one deployment's (review.selectors); the id makes ties cheap to order (bench/review.py).
        # Text search has trigram indexes on PostgreSQL (migration 0007).
        indexes = [
            models.Index(fields=["created_at", "id"], name="requestlog_time_id"),
            models.Index(fields=["deployment", "created_at", "id"], name="requestlog_dep_time_id"),
            models.Index(fields=["conversation", "created_at"]),
            # The sweep's question: which background runs have not been read back yet?
            models.Index(
                fields=["created_at"],
                name="requestlog_running_runs",
                condition=models.Q(agent_run_state="running"),
            ),
        ]

    def __str__(self) -> str:
        return self.databricks_request_id

    # How a turn fills its row while it runs (agents/turns/call.py); saved once, at the end.

    def keep_raw(self, field_name: str, text: str) -> None:
        """`request_raw` or `response_raw`, cut at REQUEST_LOG_MAX_BODY_BYTES (and flagged)."""
        limit = settings.REQUEST_LOG_MAX_BODY_BYTES
        encoded = text.encode()
        if len(encoded) > limit:
            text = encoded[:limit].decode("utf-8", errors="ignore")
            setattr(self, f"{field_name}_truncated", True)
        setattr(self, field_name, text)

    def apply_reply(self, reply: "AgentReply", status_code: int) -> None:
        self.status_code = status_code
        self.response = reply.text
        self.custom_outputs = reply.custom_outputs
        self.trace = reply.trace
        self.mlflow_trace_id = (reply.trace_id or "")[:128]
        self.output_items = reply.items
        self.databricks_request_id = reply.databricks_request_id or ""

    def keep_partial(self, reply: "AgentReply | None") -> None:
        """A stream that ended early: keep the answer so far, marked incomplete."""
        if reply is None or not (reply.text or reply.items):
            return
        self.apply_reply(reply, self.status_code)
        self.incomplete = True

    def fail(self, message: str, detail: str, status_code: int) -> None:
        self.error, self.error_detail, self.status_code = message, detail, status_code

    @property
    def has_trace(self) -> bool:
        # Lists load turns without their (possibly huge) trace and annotate `trace_present`.
        if "trace_present" in self.__dict__:
            return self.trace_present or bool(self.mlflow_trace_id)
        return self.trace is not None or bool(self.mlflow_trace_id)


class TurnKey(models.Model):
    """The idempotency key of one chat turn: a double click or a retried POST carrying the same
    key gets the first send's turn back instead of sending the message again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64)
    # The conversation the first send went to: a retried first message must not start another.
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.CASCADE, related_name="+"
    )
    turn = models.OneToOneField(
        RequestLog, null=True, on_delete=models.CASCADE, related_name="idempotency_key"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="turn_key_unique_per_user")
        ]

    def __str__(self) -> str:
        return self.key

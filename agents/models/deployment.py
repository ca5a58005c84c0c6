from urllib.parse import urlsplit

import jsonschema
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from agents import databricks_auth
from agents import validators as v


class AgentSchema(models.TextChoices):
    AUTO = "auto", "Detect automatically"
    CHAT_COMPLETIONS = "chat_completions", "Chat completions (agent/v1/chat)"
    CHAT_AGENT = "chat_agent", "ChatAgent (agent/v2/chat)"
    RESPONSES = "responses", "ResponsesAgent (agent/v1/responses)"
    LEGACY_SPLIT = "legacy_split", "Legacy {query, history} → {content}"


class EndpointKind(models.TextChoices):
    """What serves the agent; it decides how the trace comes back (protocol.md §1.6, §2)."""

    DATABRICKS = "databricks", "Databricks Model Serving (trace in databricks_output)"
    MLFLOW_AGENT_SERVER = "mlflow_agent_server", "MLflow AgentServer (trace read from MLflow)"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible chat endpoint (no trace)"
    AGENT_RUNTIME = "agent_runtime", "Databricks Agent Runtime app (/api/invocations)"
    MLFLOW_LONG_RUNNING = (
        "mlflow_long_running",
        "MLflow LongRunningAgentServer (/responses with background runs)",
    )


# The kinds that can answer in the background: the run has an id the app keeps with the turn,
# and reads the answer back by it (agents/background/).
BACKGROUND_KINDS = frozenset({EndpointKind.AGENT_RUNTIME, EndpointKind.MLFLOW_LONG_RUNNING})
# The path each of them is asked at, appended to a bare app or server URL.
INVOCATION_PATH = {
    EndpointKind.AGENT_RUNTIME: "/api/invocations",
    EndpointKind.MLFLOW_LONG_RUNNING: "/responses",
}


class FeedbackSink(models.TextChoices):
    """Where a deployment's ratings are forwarded (a delivery's sink is always one of these)."""

    DATABRICKS = "databricks_feedback", "Databricks feedback endpoint"
    MLFLOW = "mlflow_assessments", "MLflow assessments API"
    NONE = "none", "None (ratings stay in this app)"


# A deployment may leave its sink to its endpoint kind: Databricks endpoints take feedback at
# their `feedback` served model, an AgentServer's traces live on its tracking server, and an
# OpenAI-compatible endpoint has nowhere to send it.
FEEDBACK_SINK_AUTO = "auto"
FEEDBACK_SINK_CHOICES = [
    (FEEDBACK_SINK_AUTO, "Default for the endpoint kind"),
    *FeedbackSink.choices,
]
DEFAULT_SINK_OF_KIND = {
    "databricks": FeedbackSink.DATABRICKS,
    "mlflow_agent_server": FeedbackSink.MLFLOW,
    "openai_compatible": FeedbackSink.NONE,
    # Agent Runtime and LongRunningAgentServer traces live on an MLflow tracking server, when
    # one is named (effective_feedback_sink); without one, ratings stay here.
    "agent_runtime": FeedbackSink.MLFLOW,
    "mlflow_long_running": FeedbackSink.MLFLOW,
}


class AuthKind(models.TextChoices):
    NONE = "none", "No authentication"
    ENV_TOKEN = "env_token", "Bearer token read from an environment variable"
    DATABRICKS = "databricks", "databricks-sdk unified auth (profile or DATABRICKS_* environment)"
    DATABRICKS_M2M = (
        "databricks_m2m",
        "Databricks OAuth for a service principal (client id, secret in an environment variable)",
    )


# Databricks Apps take only OAuth tokens: a personal access token is refused at their door
# (README "Databricks Agent Runtime"), so an app deployment may not be saved with one.
PAT_REFUSED = (
    "Databricks Apps accept only OAuth tokens; a personal access token is refused by the app. "
    "Use Databricks OAuth: a service principal's client id and secret, or a profile signed in "
    "with `databricks auth login`."
)


SECRET_IN_ENV = frozenset({AuthKind.ENV_TOKEN, AuthKind.DATABRICKS_M2M})


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Not checked yet"
    REACHABLE = "reachable", "Reachable"
    UNAUTHORIZED = "unauthorized", "Reachable, but our credentials were refused"
    ERROR = "error", "Answers with server errors"
    UNREACHABLE = "unreachable", "Unreachable"


class Deployment(models.Model):
    """A deployed agent the app chats with: a Databricks `Deployment` plus what the app needs."""

    display_name = models.CharField(max_length=200, blank=True)
    model_name = models.CharField(max_length=255, validators=[v.validate_model_name])
    model_version = models.CharField(max_length=9, validators=[v.validate_model_version])
    endpoint_name = models.CharField(
        max_length=63,
        blank=True,
        validators=[v.validate_endpoint_name],
        help_text="Defaults to agents_<catalog-schema-model>, as databricks.agents.deploy does.",
    )
    served_entity_name = models.CharField(
        max_length=63,
        blank=True,
        validators=[v.validate_endpoint_name],
        help_text="Defaults to <catalog-schema-model>_<version>.",
    )
    query_endpoint = v.HttpUrlField(
        max_length=2000,
        help_text="The URL chat turns are POSTed to (…/serving-endpoints/<name>/invocations).",
    )
    endpoint_url = v.HttpUrlField(
        max_length=2000,
        blank=True,
        help_text="The endpoint's page in its workspace, for people.",
    )
    endpoint_kind = models.CharField(
        max_length=24, choices=EndpointKind.choices, default=EndpointKind.DATABRICKS
    )
    agent_schema = models.CharField(
        max_length=20, choices=AgentSchema.choices, default=AgentSchema.AUTO
    )
    detected_schema = models.CharField(
        max_length=20,
        choices=AgentSchema.choices,
        blank=True,
        help_text="With `auto`: the schema found from the endpoint's task or its first reply.",
    )
    streaming = models.BooleanField(
        default=False, help_text="Ask for `stream: true` and show the answer as it is written."
    )
    mlflow_tracking_uri = v.HttpUrlField(
        max_length=2000,
        blank=True,
        help_text="MLflow AgentServer: the tracking server its traces are logged to; the app "
        "fetches each turn's trace from there.",
    )
    openai_model = models.CharField(
        max_length=255,
        blank=True,
        help_text="OpenAI-compatible endpoints: the `model` to ask for (vLLM and Ollama need it).",
    )
    feedback_sink = models.CharField(
        max_length=24,
        choices=FEEDBACK_SINK_CHOICES,
        default=FEEDBACK_SINK_AUTO,
        help_text="Where ratings are forwarded. The default follows the endpoint kind: "
        "Databricks → its feedback endpoint, MLflow AgentServer → MLflow assessments on its "
        "tracking server, OpenAI-compatible → kept in this app only.",
    )
    feedback_endpoint = v.HttpUrlField(
        max_length=2000,
        blank=True,
        help_text="Databricks: the feedback model's invocations URL (derived from the query "
        "endpoint when left blank). MLflow: the tracking server's URL (the AgentServer's "
        "tracking URI when left blank).",
    )
    feedback_json_strings = models.BooleanField(
        default=False,
        help_text="Databricks sink: send source, text_assessments and retrieval_assessments as "
        "JSON strings, as Databricks' chatbot template does (default: nested objects).",
    )
    auth_kind = models.CharField(max_length=16, choices=AuthKind.choices, default=AuthKind.NONE)
    auth_env_var = models.CharField(
        max_length=128,
        blank=True,
        validators=[v.validate_env_var_name],
        help_text="Name of the environment variable that holds the bearer token (or, for "
        "Databricks OAuth, the service principal's secret). The secret is never stored here.",
    )
    databricks_host = v.HttpUrlField(
        max_length=2000,
        blank=True,
        help_text="Databricks OAuth for a service principal: the workspace URL that issues its "
        "tokens (https://<workspace>.cloud.databricks.com).",
    )
    oauth_client_id = models.CharField(
        max_length=128,
        blank=True,
        help_text="Databricks OAuth for a service principal: its client (application) id. Its "
        "secret is read from the environment variable named above.",
    )
    databricks_profile = models.CharField(
        max_length=128,
        blank=True,
        help_text="A profile in ~/.databrickscfg; blank uses DATABRICKS_HOST/DATABRICKS_TOKEN etc.",
    )
    request_timeout_s = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(900)],
        help_text="Seconds to wait for an answer; endpoints scaling up from zero need minutes.",
    )
    default_custom_inputs = models.JSONField(
        default=dict, blank=True, validators=[v.validate_json_object]
    )
    custom_inputs_schema = models.JSONField(
        null=True, blank=True, help_text="Optional JSON Schema that custom_inputs must satisfy."
    )
    reviewer_instructions = models.TextField(blank=True, help_text="Markdown shown above the chat.")
    enabled = models.BooleanField(default=True)
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="+",
        help_text="Leave users and groups empty to open the deployment to everyone with a role.",
    )
    allowed_groups = models.ManyToManyField("auth.Group", blank=True, related_name="+")
    health_status = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    health_detail = models.CharField(max_length=500, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_name", "-model_version"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_name", "model_version"],
                name="deployment_unique_model_version",
                violation_error_message="A deployment of this model version already exists.",
            )
        ]

    def __str__(self) -> str:
        return self.display_name or self.model_at_version

    @property
    def effective_schema(self) -> str:
        """The schema turns are sent in: the chosen one, else the detected one, else `auto`."""
        if self.agent_schema != AgentSchema.AUTO:
            return self.agent_schema
        return self.detected_schema or AgentSchema.AUTO

    @property
    def effective_feedback_sink(self) -> str:
        """Where ratings go: the chosen sink, else the endpoint kind's default."""
        if self.feedback_sink != FEEDBACK_SINK_AUTO:
            return self.feedback_sink
        if self.endpoint_kind in BACKGROUND_KINDS and not self.mlflow_tracking_uri:
            return FeedbackSink.NONE
        return DEFAULT_SINK_OF_KIND.get(self.endpoint_kind, FeedbackSink.NONE)

    @property
    def effective_feedback_endpoint(self) -> str:
        """The URL ratings are sent to: the one given, else derived when the sink allows it
        (derived on use, so it follows a changed query endpoint, kind or tracking URI)."""
        if self.feedback_endpoint:
            return self.feedback_endpoint
        sink = self.effective_feedback_sink
        if sink == FeedbackSink.MLFLOW:
            return self.mlflow_tracking_uri
        if sink == FeedbackSink.DATABRICKS and self.query_endpoint:
            origin = urlsplit(self.query_endpoint)
            endpoint_name = self.endpoint_name or self._derived_endpoint_name()
            return (
                f"{origin.scheme}://{origin.netloc}/serving-endpoints/"
                f"{endpoint_name}/served-models/feedback/invocations"
            )
        return ""

    @property
    def feedback_destination(self) -> str:
        """Where ratings go, in words, for pages ("kept here only" when nowhere else)."""
        sink = self.effective_feedback_sink
        if sink == FeedbackSink.NONE:
            return "kept here only"
        host = urlsplit(self.effective_feedback_endpoint).netloc
        label = FeedbackSink(sink).label
        return f"{label} at {host}" if host else f"{label} (no URL: ratings will fail)"

    @property
    def model_at_version(self) -> str:
        return f"{self.model_name}@{self.model_version}"

    @property
    def review_app_url(self) -> str:
        if self.pk is None:
            return ""
        return settings.SITE_URL + reverse("agents:chat", args=[self.pk])

    def clean(self) -> None:
        self._fill_derived_names()
        self._fill_invocation_path()
        errors: dict[str, list[str]] = {}
        if self.endpoint_kind == EndpointKind.MLFLOW_AGENT_SERVER and not self.mlflow_tracking_uri:
            errors["mlflow_tracking_uri"] = [
                "An AgentServer's traces are read from its tracking server: give its URL."
            ]
        if self.effective_feedback_sink == FeedbackSink.MLFLOW and not (
            self.effective_feedback_endpoint
        ):
            errors["feedback_endpoint"] = ["Give the MLflow tracking server's URL."]
        if self.auth_kind == AuthKind.ENV_TOKEN and not self.auth_env_var:
            errors["auth_env_var"] = ["Name the environment variable that holds the token."]
        if self.auth_kind not in SECRET_IN_ENV and self.auth_env_var:
            errors["auth_env_var"] = ["Only used with a token or a secret from the environment."]
        errors.update(self._oauth_errors())
        if self.query_endpoint:
            errors.update(self._invocation_path_errors())
        errors.update(self._custom_inputs_errors())
        if errors:
            raise ValidationError(errors)

    def _oauth_errors(self) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if self.auth_kind == AuthKind.DATABRICKS_M2M:
            if not self.databricks_host:
                errors["databricks_host"] = ["Give the workspace URL that issues the tokens."]
            if not self.oauth_client_id:
                errors["oauth_client_id"] = ["Give the service principal's client id."]
            if not self.auth_env_var:
                errors["auth_env_var"] = [
                    "Name the environment variable that holds the service principal's secret."
                ]
        elif self.oauth_client_id:
            errors["oauth_client_id"] = ["Only used with Databricks OAuth for a service principal."]
        if self.endpoint_kind == EndpointKind.AGENT_RUNTIME:
            if self.auth_kind == AuthKind.ENV_TOKEN:
                errors["auth_kind"] = [PAT_REFUSED]
            elif self.auth_kind == AuthKind.NONE:
                errors["auth_kind"] = ["A Databricks App lets in only callers with an OAuth token."]
            elif self.auth_kind == AuthKind.DATABRICKS and databricks_auth.profile_uses_pat(
                self.databricks_profile
            ):
                errors["databricks_profile"] = [PAT_REFUSED]
        return errors

    def _fill_invocation_path(self) -> None:
        """A bare app or server URL is asked at its kind's documented path."""
        path = INVOCATION_PATH.get(self.endpoint_kind)
        if path and self.query_endpoint and urlsplit(self.query_endpoint).path in ("", "/"):
            self.query_endpoint = self.query_endpoint.rstrip("/") + path

    def _invocation_path_errors(self) -> dict[str, list[str]]:
        # A run's state and events are read below this path: any other would be asked in vain.
        path = INVOCATION_PATH.get(self.endpoint_kind)
        if path and not urlsplit(self.query_endpoint).path.rstrip("/").endswith(path):
            return {
                "query_endpoint": [
                    f"Give the server's URL, or its URL ending in {path}: its runs are read there."
                ]
            }
        return {}

    def _fill_derived_names(self) -> None:
        if not (self.model_name and self.model_version):
            return
        if not self.endpoint_name:
            self.endpoint_name = self._derived_endpoint_name()
        if not self.served_entity_name:
            base = v.sanitize_model_name(self.model_name)
            self.served_entity_name = f"{base}_{self.model_version}"[:63]
        if not self.display_name:
            self.display_name = self.model_at_version

    def _derived_endpoint_name(self) -> str:
        return f"agents_{v.sanitize_model_name(self.model_name)}"[:63]

    def _custom_inputs_errors(self) -> dict[str, list[str]]:
        schema = self.custom_inputs_schema
        if schema in (None, ""):
            return {}
        if not isinstance(schema, dict):
            return {"custom_inputs_schema": ["A JSON Schema is a JSON object."]}
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            return {"custom_inputs_schema": [f"Not a valid JSON Schema: {exc.message}"]}
        mismatch = v.schema_mismatch(schema, self.default_custom_inputs)
        if mismatch is not None:
            return {"default_custom_inputs": [f"Does not match the schema. {mismatch}"]}
        return {}

from django.contrib import admin

from agents.models import Deployment, RequestLog
from feedback.admin import DeploymentLabelSchemaInline
from reviewapp.jsonlimits import ADMIN_JSON_OVERRIDES


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "model_name",
        "model_version",
        "endpoint_name",
        "agent_schema",
        "ratings_go_to",
        "enabled",
        "health_status",
        "updated_at",
    ]
    list_filter = ["enabled", "agent_schema", "feedback_sink", "health_status"]
    search_fields = ["display_name", "model_name", "endpoint_name"]
    filter_horizontal = ["allowed_users", "allowed_groups"]
    inlines = [DeploymentLabelSchemaInline]
    formfield_overrides = ADMIN_JSON_OVERRIDES
    readonly_fields = [
        "review_app_url",
        "ratings_go_to",
        "health_status",
        "health_detail",
        "health_checked_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["display_name", "model_name", "model_version", "enabled"]}),
        (
            "Endpoint",
            {
                "fields": [
                    "endpoint_kind",
                    "query_endpoint",
                    "endpoint_name",
                    "served_entity_name",
                    "endpoint_url",
                    "agent_schema",
                    "detected_schema",
                    "streaming",
                    "mlflow_tracking_uri",
                    "openai_model",
                    "request_timeout_s",
                    "review_app_url",
                ]
            },
        ),
        (
            "Authentication (references only: tokens are never stored)",
            {
                "fields": [
                    "auth_kind",
                    "auth_env_var",
                    "databricks_profile",
                    "databricks_host",
                    "oauth_client_id",
                ]
            },
        ),
        (
            "Feedback",
            {
                "fields": [
                    "feedback_sink",
                    "feedback_endpoint",
                    "feedback_json_strings",
                    "ratings_go_to",
                ]
            },
        ),
        (
            "Chat",
            {"fields": ["reviewer_instructions", "default_custom_inputs", "custom_inputs_schema"]},
        ),
        ("Access", {"fields": ["allowed_users", "allowed_groups"]}),
        (
            "Health",
            {
                "fields": [
                    "health_status",
                    "health_detail",
                    "health_checked_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    @admin.display(description="Ratings go to")
    def ratings_go_to(self, deployment: Deployment) -> str:
        # An unsaved form's defaults say nothing yet about where its ratings would go.
        return deployment.feedback_destination if deployment.pk else ""


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = [
        "databricks_request_id",
        "deployment",
        "user",
        "status_code",
        "execution_time_ms",
        "created_at",
    ]
    list_filter = ["deployment", "status_code"]
    search_fields = ["databricks_request_id", "conversation_id"]
    list_select_related = ["deployment", "user"]
    formfield_overrides = ADMIN_JSON_OVERRIDES

    def has_add_permission(self, request) -> bool:
        return False  # rows are written by chat turns only

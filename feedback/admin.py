from django.contrib import admin

from feedback import selectors
from feedback.models import (
    Delivery,
    DeliveryAttempt,
    DeploymentLabelSchema,
    LabelSchema,
    Rating,
)
from reviewapp.jsonlimits import ADMIN_JSON_OVERRIDES


class DeploymentLabelSchemaInline(admin.TabularInline):
    """Edited on the deployment's admin page; with none, the default thumbs question is asked."""

    model = DeploymentLabelSchema
    extra = 0
    fields = ["order", "schema"]
    autocomplete_fields = ["schema"]
    verbose_name = "label schema"
    verbose_name_plural = (
        "Label schemas the chat asks (none: the default “Is this response correct for your "
        "question?”, thumbs up/down as answer_correct)"
    )


@admin.register(LabelSchema)
class LabelSchemaAdmin(admin.ModelAdmin):
    list_display = ["name", "title", "kind", "input_type", "required", "updated_at"]
    list_filter = ["kind", "input_type"]
    search_fields = ["name", "title"]
    formfield_overrides = ADMIN_JSON_OVERRIDES  # `options`
    fields = [
        "name",
        "title",
        "instruction",
        "kind",
        "input_type",
        "options",
        ("min_value", "max_value", "step"),
        ("max_length", "max_count"),
        "enable_comment",
        "required",
    ]

    actions = None  # no bulk delete: each deletion is checked for labels first

    def has_delete_permission(self, request, obj=None) -> bool:
        # Its labels would lose what they answer; a deployment's default set protects it too.
        in_use = obj is not None and selectors.label_schema_in_use(obj)
        return super().has_delete_permission(request, obj) and not in_use


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ["started_at", "status_code", "duration_ms", "error", "batch_size", "task_id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ["pk", "request", "deployment", "source_id", "is_current", "created_at"]
    list_filter = ["deployment", "is_current"]
    search_fields = ["source_id", "request__databricks_request_id"]
    list_select_related = ["request", "deployment"]
    readonly_fields = [f.name for f in Rating._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # ratings are made by reviewers, and never edited: a change is a new one


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["pk", "rating", "deployment", "sink", "status", "attempts", "next_attempt_at"]
    list_filter = ["status", "sink", "deployment"]
    list_select_related = ["rating", "deployment"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [DeliveryAttemptInline]

    def has_add_permission(self, request) -> bool:
        return False

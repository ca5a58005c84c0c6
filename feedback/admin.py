from django.contrib import admin

from feedback.models import Delivery, DeliveryAttempt, Question, Rating
from reviewapp.jsonlimits import ADMIN_JSON_OVERRIDES


class QuestionInline(admin.TabularInline):
    """Edited on the deployment's admin page; with none, the default thumbs question is asked."""

    model = Question
    extra = 0
    fields = ["order", "name", "text", "kind", "options", "min_value", "max_value"]
    formfield_overrides = ADMIN_JSON_OVERRIDES  # `options`
    verbose_name = "rating question"
    verbose_name_plural = (
        "Rating questions (none: the default “Is this response correct for your question?”, "
        "thumbs up/down as answer_correct)"
    )


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

from django.contrib import admin

from review.models import ReviewItem, ReviewSession, SessionLabelSchema


class SessionLabelSchemaInline(admin.TabularInline):
    model = SessionLabelSchema
    extra = 0
    fields = ["order", "schema"]
    autocomplete_fields = ["schema"]


@admin.register(ReviewSession)
class ReviewSessionAdmin(admin.ModelAdmin):
    """For a look; sessions are made on /review/sessions/new/ or through the API, whose service
    also adds the items' slots and checks every field."""

    list_display = ["name", "state", "reviewers_per_item", "due_at", "created_at"]
    list_filter = ["state"]
    search_fields = ["name"]
    readonly_fields = ["created_by", "created_at", "updated_at", "pulled_until_id"]
    filter_horizontal = ["deployments", "assigned_users", "assigned_groups"]
    inlines = [SessionLabelSchemaInline]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["pk", "session", "turn", "done_count", "settled_at"]
    list_filter = ["session"]
    list_select_related = ["session", "turn"]
    readonly_fields = [f.name for f in ReviewItem._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

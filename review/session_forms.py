"""The admin's form for a review session: its fields as review.services.session_save takes
them (names and ids), so the page and the API save through the same service."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import QueryDict

from agents.models import Deployment
from feedback.models import LabelSchema
from review.models import MAX_REVIEWERS_PER_ITEM, SessionState
from reviewapp import roles


class ReviewSessionForm(forms.Form):
    name = forms.CharField(max_length=200)
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        help_text="Markdown. Shown to every reviewer, one key away in focus mode.",
    )
    label_schemas = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="Manage them in Admin → Label schemas; the API can set their order.",
    )
    deployments = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    assigned_users = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, required=False, label="Reviewers"
    )
    assigned_groups = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, required=False, label="Groups"
    )
    reviewers_per_item = forms.IntegerField(
        min_value=1,
        max_value=MAX_REVIEWERS_PER_ITEM,
        initial=1,
        help_text="How many reviewers label each item; two or more give agreement figures.",
    )
    due_at = forms.DateTimeField(
        required=False,
        label="Due",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    state = forms.ChoiceField(choices=SessionState.choices, initial=SessionState.OPEN)
    keep_adding = forms.BooleanField(
        required=False,
        label="Keep adding new turns that match the requests page's filters",
    )
    saved_filter = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label_schemas"].choices = [
            (s.name, f"{s.name}: {s.title}") for s in LabelSchema.objects.all()
        ]
        self.fields["deployments"].choices = [(str(d.pk), str(d)) for d in Deployment.objects.all()]
        reviewers = (
            get_user_model()
            .objects.filter(groups__name__in=[roles.REVIEWER, roles.ADMIN])
            .distinct()
        )
        self.fields["assigned_users"].choices = [
            (u.get_username(), u.get_username()) for u in reviewers.order_by("username")
        ]
        self.fields["assigned_groups"].choices = [
            (g.name, g.name) for g in Group.objects.order_by("name")
        ]

    def session_data(self) -> dict:
        """The cleaned fields as session_save takes them."""
        data = dict(self.cleaned_data)
        data["deployments"] = [int(pk) for pk in data["deployments"]]
        keep, query = data.pop("keep_adding"), data.pop("saved_filter")
        data["saved_filter"] = _query_dict(query) if keep else None
        return data


def _query_dict(query: str) -> dict:
    return {k: v for k, v in QueryDict(query).items() if v}


def initial_of(session) -> dict:
    return {
        "name": session.name,
        "instructions": session.instructions,
        "label_schemas": [
            link.schema.name for link in session.schema_links.select_related("schema")
        ],
        "deployments": [str(pk) for pk in session.deployments.values_list("pk", flat=True)],
        "assigned_users": [u.get_username() for u in session.assigned_users.all()],
        "assigned_groups": list(session.assigned_groups.values_list("name", flat=True)),
        "reviewers_per_item": session.reviewers_per_item,
        "due_at": session.due_at,
        "state": session.state,
        "keep_adding": session.saved_filter is not None,
    }

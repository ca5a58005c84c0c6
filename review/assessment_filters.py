"""The assessments page's filters (and its export's): parsed from the URL, checked, and turned
into review.assessment_selectors' arguments."""

from dataclasses import dataclass
from datetime import datetime

from django import forms

from feedback.models import DeliveryStatus
from review.filters import KeysetFilterForm, check_days

_QUESTION_NAME = r"^[a-z][a-z0-9_]{0,63}\Z"


@dataclass(frozen=True)
class AssessmentFilters:
    deployment_id: int | None = None
    question: str = ""
    value: str = ""
    reviewer: str = ""
    session_id: int | None = None
    status: str = ""
    start: datetime | None = None
    end: datetime | None = None
    current_only: bool = False


class AssessmentFilterForm(KeysetFilterForm):
    deployment = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, label="Deployment"
    )
    question = forms.RegexField(
        _QUESTION_NAME,
        required=False,
        max_length=64,
        label="Question",
        error_messages={"invalid": "Name a question, for example answer_correct."},
    )
    value = forms.CharField(required=False, max_length=200, label="Answer")
    reviewer = forms.CharField(required=False, max_length=150, label="Reviewer")
    session = forms.IntegerField(required=False, min_value=1, label="Review session")
    status = forms.ChoiceField(
        choices=[("", "Any delivery"), *DeliveryStatus.choices], required=False, label="Delivery"
    )
    since = forms.DateField(required=False, label="From")
    until = forms.DateField(required=False, label="To")
    current = forms.BooleanField(required=False, label="Current versions only")
    after = forms.CharField(required=False, max_length=200)

    def __init__(self, data, *, deployments):
        super().__init__(data)
        self.fields["deployment"].choices = [("", "All deployments")] + [
            (d.pk, str(d)) for d in deployments
        ]

    def clean(self) -> dict:
        data = super().clean()
        check_days(self, data)
        if data.get("value") and not data.get("question"):
            self.add_error("value", "Name the question this answer is to.")
        return data

    def to_filters(self) -> AssessmentFilters:
        data = self.cleaned_data
        start, end = self.time_range()
        return AssessmentFilters(
            deployment_id=data.get("deployment"),
            question=data.get("question", ""),
            value=data.get("value", "").strip(),
            reviewer=data.get("reviewer", "").strip(),
            session_id=data.get("session"),
            status=data.get("status", ""),
            start=start,
            end=end,
            current_only=bool(data.get("current")),
        )

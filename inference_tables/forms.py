"""The assessment export's filters (the request export takes the requests page's own form,
review.filters.RequestFilterForm, so it exports exactly what that page lists)."""

from django import forms

from feedback.models import DeliveryStatus
from review.filters import EARLIEST_DAY, LATEST_DAY


class AssessmentFilterForm(forms.Form):
    deployment = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    status = forms.ChoiceField(choices=[("", "Any"), *DeliveryStatus.choices], required=False)
    since = forms.DateField(required=False)
    until = forms.DateField(required=False)

    def __init__(self, data, *, deployments):
        super().__init__(data)
        self.fields["deployment"].choices = [("", "All deployments")] + [
            (d.pk, str(d)) for d in deployments
        ]

    def clean(self) -> dict:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        for name, day in (("since", since), ("until", until)):
            if day and not LATEST_DAY >= day >= EARLIEST_DAY:
                self.add_error(name, f"Pick a day between {EARLIEST_DAY} and {LATEST_DAY}.")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return data

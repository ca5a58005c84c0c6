"""feedback 0002: a question renamed to `<name>_<deployment id>` must not overwrite the answers
of the deployment's own question of that name (review finding)."""

import pytest

from feedback.models import LabelSchema, Rating
from tests.feedback.test_migrations import at_0001, insert_question, insert_rating  # noqa: F401
from tests.support.turns import logged_turn


@pytest.mark.django_db(transaction=True)
def test_a_renamed_question_does_not_overwrite_a_question_of_its_new_name(
    at_0001,  # noqa: F811
    deployment_factory,
    reviewer,
):
    first, second = deployment_factory(), deployment_factory()
    taken = f"tone_{second.pk}"  # the name second's "tone" is renamed to
    insert_question(first, 0, "tone", "Tone?", "categorical", options=["ok", "rude"])
    insert_question(second, 0, "tone", "Polite?", "thumbs")
    insert_question(second, 1, taken, "Tone score", "numeric", min_value=1, max_value=5)
    turn = logged_turn(second, reviewer)
    both = {"ratings": {"tone": {"value": "positive"}, taken: {"value": 3}}}
    rating_id = insert_rating(turn, reviewer, both)

    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    given = Rating.objects.get(pk=rating_id).text_assessment["ratings"]
    assert len(given) == 2, given  # neither answer lost
    by_value = {entry["value"]: name for name, entry in given.items()}
    thumbs = LabelSchema.objects.get(name=by_value["positive"])
    numeric = LabelSchema.objects.get(name=by_value[3])
    assert (thumbs.input_type, numeric.input_type) == ("thumbs", "numeric")

"""Feedback relayed for other people through the Databricks feedback API: a chatbot that sends
its end users' thumbs under its own token, as Databricks' chatbot template does."""

import pytest
from django.contrib.auth.models import Group, Permission

from feedback.models import Delivery, DeliveryStatus, Rating
from feedback.sinks import databricks_record
from reviewapp import roles
from tests.feedback.test_inbound import docs_example, send, token_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay(django_user_model):
    """A service user with the reviewer role and the permission to relay."""
    user = django_user_model.objects.create_user("e2e-chatbot-app", "", "pw")
    user.groups.add(Group.objects.get(name=roles.REVIEWER))
    user.user_permissions.add(Permission.objects.get(codename="relay_feedback"))
    return user


def thumbs(turn, source_id: str, value: str) -> dict:
    record = docs_example(turn.databricks_request_id, source_id)["dataframe_records"][0]
    record["text_assessments"] = [{"ratings": {"answer_correct": {"value": value}}}]
    return record


def test_each_end_user_gets_their_own_current_rating(turn, relay):
    token = token_of(relay)
    body = {
        "dataframe_records": [
            thumbs(turn, "ann@corp.example", "positive"),
            thumbs(turn, "ben@corp.example", "negative"),
        ]
    }
    assert send(turn, body, token=token).status_code == 200
    ann, ben = Rating.objects.order_by("pk")
    assert (ann.source_id, ann.reviewer, ann.relayed_by) == ("ann@corp.example", None, relay)
    assert ben.source_id == "ben@corp.example" and ben.is_current and ann.is_current
    # Forwarded under the end user's name, as Databricks would have recorded it.
    assert databricks_record(ann, as_json_strings=False)["source"] == {
        "id": "ann@corp.example",
        "type": "human",
    }
    # Ann changes her mind: her new rating replaces hers only.
    send(turn, {"dataframe_records": [thumbs(turn, "ann@corp.example", "negative")]}, token=token)
    current = Rating.objects.filter(is_current=True)
    assert sorted(current.values_list("source_id", flat=True)) == [
        "ann@corp.example",
        "ben@corp.example",
    ]
    assert not Rating.objects.get(pk=ann.pk).is_current
    assert Delivery.objects.get(rating=ann).status == DeliveryStatus.SUPERSEDED


def test_relaying_needs_the_permission_and_saves_nothing_without_it(turn, reviewer, relay):
    body = {"dataframe_records": [thumbs(turn, "ann@corp.example", "positive")]}
    response = send(turn, body, token=token_of(reviewer))
    assert response.status_code == 400
    assert "needs the permission to relay" in response.json()["message"]
    response = send(
        turn,
        {"dataframe_records": [thumbs(turn, "consensus:me@corp.example", "positive")]},
        token=token_of(relay),
    )
    assert response.status_code == 400
    assert "may not start with 'consensus:'" in response.json()["message"]
    assert not Rating.objects.exists()


def test_the_callers_own_source_is_still_their_rating(turn, relay):
    body = {"dataframe_records": [thumbs(turn, "e2e-chatbot-app", "positive")]}
    assert send(turn, body, token=token_of(relay)).status_code == 200
    rating = Rating.objects.get()
    assert (rating.reviewer, rating.relayed_by) == (relay, None)

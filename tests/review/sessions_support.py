"""A review session over logged turns, for the session tests."""

from django.contrib.auth.models import Group

from feedback.models import LabelSchema
from review import services
from reviewapp import roles
from tests.support.turns import logged_turn


def make_reviewer(django_user_model, name: str):
    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw-" + name)
    user.groups.add(Group.objects.get(name=roles.REVIEWER))
    return user


def make_session(admin, deployment, reviewers, *, turns: int = 3, per_item: int = 1, **extra):
    LabelSchema.objects.get_or_create(
        name="tone",
        defaults={"title": "Tone?", "input_type": "categorical", "options": ["ok", "rude"]},
    )
    session = services.session_save(
        user=admin,
        data={
            "name": "Week 49",
            "label_schemas": ["answer_correct", "tone"],
            "deployments": [deployment.pk],
            "assigned_users": [r.get_username() for r in reviewers],
            "reviewers_per_item": per_item,
            **extra,
        },
    )
    logged = [logged_turn(deployment, admin, request=f"Question {i}") for i in range(turns)]
    services.items_add(session=session, user=admin, turns=logged)
    return session, logged


def label(correct: str, tone: str = "ok") -> dict:
    return {"ratings": {"answer_correct": {"value": correct}, "tone": {"value": tone}}}

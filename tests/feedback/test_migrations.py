"""feedback 0002: per-deployment questions become shared label schemas, and no rating loses
what it answers. Rows are written as the 0001 schema had them (raw SQL: the Question model is
gone), then the migration runs for real and the result is read through today's models."""

import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from feedback.label_values import label_schemas_for
from feedback.models import DeploymentLabelSchema, LabelSchema, Rating
from tests.support.turns import logged_turn

BEFORE = "0001_ratings_and_deliveries"


def insert_question(deployment, order: int, name: str, text: str, kind: str, **answers) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            # "order" quoted as standard SQL does, for SQLite and PostgreSQL alike.
            "INSERT INTO feedback_question (deployment_id, name, text, kind, options, min_value,"
            ' max_value, "order") VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
            [
                deployment.pk,
                name,
                text,
                kind,
                json.dumps(answers.get("options", [])),
                answers.get("min_value"),
                answers.get("max_value"),
                order,
            ],
        )


def insert_rating(turn, reviewer, text_assessment: dict, *, is_current: bool = True) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO feedback_rating (request_id, deployment_id, reviewer_id, source_id,"
            " source_type, text_assessment, retrieval_assessments, is_current, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                turn.pk,
                turn.deployment_id,
                reviewer.pk,
                reviewer.email,
                "human",
                json.dumps(text_assessment),
                "[]",
                is_current,
                timezone.now(),
            ],
        )
        cursor.execute("SELECT MAX(id) FROM feedback_rating")
        return cursor.fetchone()[0]


def ratings_of(name: str, value) -> dict:
    return {"ratings": {name: {"value": value}}}


@pytest.fixture
def at_0001():
    """The database with feedback migrated back to 0001 (which unapplies whatever depends on
    0002), and forward to the newest migrations afterwards, whatever the test did."""
    call_command("migrate", "feedback", BEFORE, verbosity=0)
    try:
        yield
    finally:
        call_command("migrate", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_questions_become_shared_label_schemas_and_ratings_keep_their_meaning(
    at_0001, deployment_factory, reviewer
):
    first, second, plain, odd = (deployment_factory() for _ in range(4))
    # The same question in two deployments (in other orders): one schema.
    insert_question(first, 0, "grounded", "Is it grounded?", "thumbs")
    insert_question(first, 1, "score", "Score 1-5", "numeric", min_value=1, max_value=5)
    insert_question(first, 2, "tone", "Tone?", "categorical", options=["formal", "casual"])
    insert_question(second, 0, "tone", "Is it polite?", "categorical", options=["ok", "rude"])
    insert_question(second, 5, "score", "Score 1-5", "numeric", min_value=1, max_value=5)
    # `plain` has no questions: it asked the default thumbs answer_correct. `odd` used that
    # name for other answers.
    insert_question(odd, 0, "answer_correct", "Correct?", "categorical", options=["yes", "no"])

    turns = {d: logged_turn(d, reviewer) for d in (first, second, plain, odd)}
    kept_first = {
        **ratings_of("tone", "casual"),
        "free_text_comment": "Fine",
    }
    renamed_second = {
        "ratings": {
            "tone": {"value": "rude", "rationale": "Curt"},
            "score": {"value": "2"},
        },
        "suggested_output": "Say please.",
    }
    kept_second = ratings_of("score", "4")  # an older version that never answered `tone`
    kept_plain = ratings_of("answer_correct", "negative")
    renamed_odd = ratings_of("answer_correct", "yes")
    ids = {
        "first": insert_rating(turns[first], reviewer, kept_first),
        "second": insert_rating(turns[second], reviewer, renamed_second),
        "plain": insert_rating(turns[plain], reviewer, kept_plain),
        "odd": insert_rating(turns[odd], reviewer, renamed_odd),
    }
    ids["second_old"] = insert_rating(turns[second], reviewer, kept_second, is_current=False)

    call_command("migrate", verbosity=0)

    schemas = {s.name: s for s in LabelSchema.objects.all()}
    tone_2, correct_4 = f"tone_{second.pk}", f"answer_correct_{odd.pk}"
    assert set(schemas) == {
        "grounded",
        "score",
        "tone",
        tone_2,
        correct_4,
        "answer_correct",
        "expected_response",
        "expected_facts",
        "guidelines",
    }
    answers = {
        name: (s.kind, s.input_type, s.title, s.options, s.min_value, s.max_value)
        for name, s in schemas.items()
    }
    assert answers["score"] == ("feedback", "numeric", "Score 1-5", [], 1, 5)
    assert answers["tone"] == ("feedback", "categorical", "Tone?", ["formal", "casual"], None, None)
    assert answers[tone_2] == (
        "feedback",
        "categorical",
        "Is it polite?",
        ["ok", "rude"],
        None,
        None,
    )
    assert answers[correct_4][1:4] == ("categorical", "Correct?", ["yes", "no"])
    # Built in: the default question, and the expectations MLflow knows.
    assert answers["answer_correct"] == (
        "feedback",
        "thumbs",
        "Is this response correct for your question?",
        [],
        None,
        None,
    )
    assert answers["expected_response"][:2] == ("expectation", "text")
    assert answers["expected_facts"][:2] == ("expectation", "text_list")
    assert answers["guidelines"][:2] == ("expectation", "text_list")

    def asked(deployment) -> list[str]:
        deployment.refresh_from_db()
        return [s.name for s in label_schemas_for(deployment)]

    assert asked(first) == ["grounded", "score", "tone"]
    assert asked(second) == [tone_2, "score"]
    assert asked(odd) == [correct_4]
    assert not DeploymentLabelSchema.objects.filter(deployment=plain).exists()
    assert asked(plain) == ["answer_correct"]  # still thumbs up/down, as its ratings say

    text = dict(Rating.objects.values_list("pk", "text_assessment"))
    assert text[ids["first"]] == kept_first
    assert text[ids["second"]] == {
        "ratings": {tone_2: {"value": "rude", "rationale": "Curt"}, "score": {"value": "2"}},
        "suggested_output": "Say please.",
    }
    assert text[ids["second_old"]] == kept_second
    assert text[ids["plain"]] == kept_plain
    assert text[ids["odd"]] == ratings_of(correct_4, "yes")
    assert Rating.objects.filter(is_current=True).count() == 4

    # Back again: each deployment's set becomes its questions, in order, under the new names
    # (which its ratings now use); forward once more gives the same schemas.
    call_command("migrate", "feedback", BEFORE, verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT deployment_id, name, kind, "order" FROM feedback_question'
            ' ORDER BY deployment_id, "order"'
        )
        questions = cursor.fetchall()
    assert questions == [
        (first.pk, "grounded", "thumbs", 0),
        (first.pk, "score", "numeric", 1),
        (first.pk, "tone", "categorical", 2),
        (second.pk, tone_2, "categorical", 0),
        (second.pk, "score", "numeric", 5),
        (odd.pk, correct_4, "categorical", 0),
    ]
    call_command("migrate", verbosity=0)
    assert set(LabelSchema.objects.values_list("name", flat=True)) == set(schemas)
    assert asked(second) == [tone_2, "score"]

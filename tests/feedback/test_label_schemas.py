"""Label schemas at work: each input type's values, `required` (a review session's), and
expectations, which are stored apart from feedback and sent as each sink can take them."""

import json

import pytest
from django.core.exceptions import ValidationError

from feedback import delivery, label_schema_services, services, sinks
from feedback.models import EXPECTED_RESPONSE, LabelSchema, Rating
from tests.feedback.conftest import label_schemas
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db

EVERY_TYPE = (
    {"name": "correct", "input_type": "thumbs"},
    {"name": "tone", "input_type": "categorical", "options": ["formal", "casual"]},
    {"name": "issues", "input_type": "categorical_list", "options": ["vague", "wrong", "rude"]},
    {"name": "score", "input_type": "numeric", "min_value": 1, "max_value": 5, "step": 0.5},
    {"name": "missing", "input_type": "text", "max_length": 10},
    {"name": "sources", "input_type": "text_list", "max_count": 2, "max_length": 5},
)
EXPECTATIONS = (
    {"name": "facts", "kind": "expectation", "input_type": "text_list"},
    {
        "name": "answer_kind",
        "kind": "expectation",
        "input_type": "categorical",
        "options": ["how-to", "definition"],
    },
)


@pytest.fixture
def turn(deployment_factory, reviewer):
    """A logged turn of a deployment asking a schema of every input type and two expectations
    (no agent call: these tests are about the rating alone)."""
    deployment = deployment_factory(feedback_sink="databricks_feedback")
    label_schemas(deployment, *EVERY_TYPE, *EXPECTATIONS)
    return logged_turn(deployment, reviewer)


def rate(turn, reviewer, **text) -> Rating:
    return services.rating_create(turn=turn, reviewer=reviewer, text_assessments=[text])


def refusal(turn, reviewer, **text) -> str:
    with pytest.raises(ValidationError) as caught:
        rate(turn, reviewer, **text)
    return " ".join(caught.value.messages)


def said(**values) -> dict:
    return {name: {"value": value} for name, value in values.items()}


def test_each_input_type_keeps_what_fits_it(turn, reviewer):
    rating = rate(
        turn,
        reviewer,
        ratings=said(
            correct="positive",
            tone="formal",
            issues=["rude", "vague"],
            score=3.5,
            missing="A link",
            sources=["doc 1", "doc 2"],
        ),
    )
    assert rating.text_assessment["ratings"] == said(
        correct="positive",
        tone="formal",
        issues=["vague", "rude"],  # in the schema's order, whatever order they were picked in
        score="3.5",
        missing="A link",
        sources=["doc 1", "doc 2"],
    )


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        (said(issues=["vague", "boring"]), "may hold only 'vague', 'wrong', 'rude'"),
        (said(issues=["vague", "vague"]), "names an option twice"),
        (said(issues="vague"), "must be a non-empty list of options"),
        (said(issues=[]), "must be a non-empty list of options"),
        (said(tone=["formal"]), "must be one of 'formal', 'casual'"),
        (said(score=3.3), "must be 1 plus a multiple of 0.5"),
        (said(score="4.25"), "must be 1 plus a multiple of 0.5"),
        (said(score=5.5), "between 1 and 5"),
        (said(missing="Eleven char"), "is longer than 10 characters"),
        (said(sources=["a", "b", "c"]), "has 3 texts; at most 2"),
        (said(sources=["a", "longer"]), "item 1 is longer than 5 characters"),
        (said(sources=["a", " "]), "item 1 must be a non-empty text"),
        (said(sources="a"), "must be a non-empty list of texts"),
    ],
)
def test_a_value_that_does_not_fit_its_input_type_is_refused(turn, reviewer, ratings, message):
    assert message in refusal(turn, reviewer, ratings=ratings)
    assert not Rating.objects.exists()


def test_numeric_steps_count_from_the_minimum(turn, reviewer):
    for value, stored in ((1, "1"), (3.5, "3.5"), ("4.5", "4.5"), (5, "5")):
        rating = rate(turn, reviewer, ratings=said(score=value))
        assert rating.text_assessment["ratings"]["score"] == {"value": stored}


def test_required_is_enforced_only_when_asked(turn, reviewer):
    schemas = [
        label_schema_services.label_schema_save(data={"name": name, "title": "?", **fields})
        for name, fields in (
            ("must_score", {"input_type": "numeric", "min_value": 0, "max_value": 1}),
            ("must_facts", {"kind": "expectation", "input_type": "text_list"}),
            ("optional", {"input_type": "thumbs"}),
        )
    ]
    for schema in schemas[:2]:
        label_schema_services.label_schema_save(schema=schema, data={"required": True})

    def create(require: bool, **text):
        return services.rating_create(
            turn=turn, reviewer=reviewer, text_assessments=[text], schemas=schemas, require=require
        )

    # The chat's rating bar (and the API) leave required schemas out as they like...
    assert create(False, ratings=said(optional="positive")).pk
    # ...a review session's label may not.
    with pytest.raises(ValidationError, match=r"Required: must_score, must_facts\."):
        create(True, ratings=said(optional="positive"))
    with pytest.raises(ValidationError, match=r"Required: must_facts\."):
        create(True, ratings=said(must_score=1))
    rating = create(True, ratings=said(must_score=0), expectations=said(must_facts=["A fact"]))
    assert rating.text_assessment["expectations"] == said(must_facts=["A fact"])


def test_a_required_expected_response_is_given_by_the_better_answer(turn, reviewer):
    better, _ = LabelSchema.objects.get_or_create(
        name=EXPECTED_RESPONSE, defaults={"kind": "expectation", "input_type": "text"}
    )
    better.required = True
    schemas = [better]

    def create(**text):
        return services.rating_create(
            turn=turn, reviewer=reviewer, text_assessments=[text], schemas=schemas, require=True
        )

    with pytest.raises(ValidationError, match=r"Required: expected_response\."):
        create(free_text_comment="Too short")
    assert create(suggested_output="Say more.").text_assessment == {"suggested_output": "Say more."}


def test_expectations_are_stored_apart_from_feedback(turn, reviewer):
    LabelSchema.objects.get_or_create(
        name=EXPECTED_RESPONSE, defaults={"kind": "expectation", "input_type": "text"}
    )
    label_schema_services.deployment_label_schemas_set(
        deployment=turn.deployment, names=["correct", "facts", "answer_kind", EXPECTED_RESPONSE]
    )
    rating = rate(
        turn,
        reviewer,
        ratings=said(correct="negative"),
        expectations={
            "facts": {"value": ["Spans nest", "Each step is a span"], "rationale": "From docs"},
            "answer_kind": {"value": "definition"},
            EXPECTED_RESPONSE: {"value": "Tracing records every step."},
        },
    )
    assert rating.text_assessment == {
        "ratings": said(correct="negative"),
        "expectations": {
            "facts": {"value": ["Spans nest", "Each step is a span"], "rationale": "From docs"},
            "answer_kind": {"value": "definition"},
        },
        # The Databricks record's own field for "what the answer should have been".
        "suggested_output": "Tracing records every step.",
    }
    # Each kind is answered in its own place only.
    assert "no such question here (it has correct)" in refusal(
        turn, reviewer, ratings=said(facts=["A"])
    )
    assert "no such expectation here" in refusal(
        turn, reviewer, expectations=said(correct="positive")
    )
    assert "answer_kind: the value must be one of" in refusal(
        turn, reviewer, expectations=said(answer_kind="opinion")
    )


def test_mlflow_gets_expectations_as_expectation_assessments(turn, reviewer):
    rating = rate(
        turn,
        reviewer,
        ratings=said(correct="positive", issues=["wrong"], score="4.5"),
        expectations=said(facts=["Spans nest"], answer_kind="how-to"),
        free_text_comment="Mostly right",
    )
    items = dict(sinks.mlflow_assessments(rating, "tr-1"))
    assert items["e:facts"]["assessment_name"] == "facts"
    assert items["e:facts"]["expectation"] == {"value": ["Spans nest"]}
    assert items["e:answer_kind"]["expectation"] == {"value": "how-to"}
    assert "feedback" not in items["e:facts"] and "rationale" not in items["e:facts"]
    # Feedback in MLflow's value types: a boolean thumbs, a float number, a list of options.
    assert items["q:correct"]["feedback"] == {"value": True}
    assert items["q:score"]["feedback"] == {"value": 4.5}
    assert items["q:issues"]["feedback"] == {"value": ["wrong"]}
    assert items["q:issues"]["rationale"] == "Mostly right"


def test_databricks_gets_expectations_folded_into_ratings_as_strings(turn, reviewer, fake_sink):
    rating = rate(
        turn,
        reviewer,
        ratings=said(correct="negative", issues=["vague", "wrong"], score=2),
        expectations={"facts": {"value": ["Spans nest", "Ünïcode"], "rationale": "Docs"}},
        suggested_output="Better.",
    )
    assert delivery.delivery_run(rating.deliveries.get().pk) == "sent"
    [record] = fake_sink.posts[0]["body"]["dataframe_records"]
    # The feedback record has no expectations field: they go into `ratings`, every value a
    # string, a list as its JSON.
    assert record["text_assessments"] == [
        {
            "ratings": {
                "correct": {"value": "negative"},
                "issues": {"value": '["vague", "wrong"]'},
                "score": {"value": "2"},
                "facts": {"value": '["Spans nest", "Ünïcode"]', "rationale": "Docs"},
            },
            "suggested_output": "Better.",
        }
    ]
    assert json.loads(record["text_assessments"][0]["ratings"]["facts"]["value"]) == [
        "Spans nest",
        "Ünïcode",
    ]
    # What is kept here is unchanged: lists stay lists, expectations stay apart.
    rating.refresh_from_db()
    assert rating.text_assessment["expectations"]["facts"]["value"] == ["Spans nest", "Ünïcode"]

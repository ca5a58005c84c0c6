"""Agreement over real current ratings: the selector, the requests page's Agreement panel, the
disagreements filter and GET /api/v1/agreement/."""

import re
from html import unescape

import pytest
from django.contrib.auth.models import Group

from feedback import label_schema_services
from feedback import services as feedback_services
from feedback.models import LabelSchema
from review import agreement_selectors
from review.filters import RequestFilters
from reviewapp import roles
from tests.feedback.conftest import label_schemas
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db
PAGE = "/requests/"
PANEL = "/requests/agreement/"
API = "/api/v1/agreement/"


def said(expectations: dict | None = None, **values) -> list[dict]:
    text: dict = {"ratings": {name: {"value": value} for name, value in values.items()}}
    if expectations:
        text["expectations"] = {name: {"value": value} for name, value in expectations.items()}
    return [text]


@pytest.fixture
def bob(django_user_model):
    user = django_user_model.objects.create_user("bob-reviewer", "bob@example.com", "pw")
    user.groups.add(Group.objects.get(name=roles.REVIEWER))
    return user


@pytest.fixture
def bot(deployment_factory):
    bot = deployment_factory(display_name="Bot A")
    # answer_correct may be there already (the migration makes it); the others are new.
    LabelSchema.objects.get_or_create(
        name="answer_correct", defaults={"title": "Correct?", "input_type": "thumbs"}
    )
    label_schemas(
        bot,
        {"name": "score", "input_type": "numeric", "min_value": 1, "max_value": 5},
        {"name": "why", "input_type": "text"},
        # What the answer should be is not a judgement reviewers agree on: left out.
        {
            "name": "topic",
            "kind": "expectation",
            "input_type": "categorical",
            "options": ["a", "b"],
        },
    )
    label_schema_services.deployment_label_schemas_set(
        deployment=bot, names=["answer_correct", "score", "why", "topic"]
    )
    return bot


@pytest.fixture
def rated(bot, reviewer, bob):
    """Rita and Bob agree on `agree`, differ on `differ`; `alone` has Rita's answer only; Rita
    changed her mind on `changed` (her current rating agrees with Bob's); `unrated` has none."""
    rate = feedback_services.rating_create
    turns = {
        name: logged_turn(bot, reviewer)
        for name in ("agree", "differ", "alone", "changed", "unrated")
    }
    rate(
        turn=turns["agree"],
        reviewer=reviewer,
        text_assessments=said(
            answer_correct="positive", score=4, why="Clear.", expectations={"topic": "a"}
        ),
    )
    rate(
        turn=turns["agree"],
        reviewer=bob,
        text_assessments=said(
            answer_correct="positive", score=5, why="Good.", expectations={"topic": "b"}
        ),
    )
    rate(
        turn=turns["differ"],
        reviewer=reviewer,
        text_assessments=said(answer_correct="negative", score=2),
    )
    rate(
        turn=turns["differ"],
        reviewer=bob,
        text_assessments=said(answer_correct="positive", score=2),
    )
    rate(turn=turns["alone"], reviewer=reviewer, text_assessments=said(answer_correct="negative"))
    rate(turn=turns["changed"], reviewer=reviewer, text_assessments=said(answer_correct="negative"))
    rate(turn=turns["changed"], reviewer=reviewer, text_assessments=said(answer_correct="positive"))
    rate(turn=turns["changed"], reviewer=bob, text_assessments=said(answer_correct="positive"))
    return turns


def by_question(report) -> dict:
    return {q.question: q for q in report.questions}


def test_the_selector_uses_current_ratings_of_turns_with_two_answers(rated, reviewer, bot):
    report = agreement_selectors.agreement_by_question(reviewer, RequestFilters())
    questions = by_question(report)
    assert set(questions) == {"answer_correct", "score"}  # a text question has no agreement
    thumbs = questions["answer_correct"]
    assert thumbs.level == "nominal"
    # agree, differ and changed (current answers: +/+, -/+, +/+); `alone` has one answer.
    assert (thumbs.agreement.items, thumbs.agreement.reviewers) == (3, 2)
    assert thumbs.agreement.figure("percent_agreement").value == pytest.approx(2 / 3)
    # Rita said positive on 2 of 3, Bob on 3 of 3: chance agreement 2/3 equals the observed.
    assert thumbs.agreement.figure("cohens_kappa").value == pytest.approx(0.0)
    assert thumbs.agreement.figure("fleiss_kappa") is None
    score = questions["score"]
    assert score.level == "interval" and score.agreement.items == 2
    assert score.agreement.figure("krippendorff_alpha").name == "Krippendorff's α (interval)"
    assert (report.turns, report.capped) == (3, False)  # turns with two or more answers


def test_the_selector_follows_the_filters_and_caps_the_turns(rated, reviewer, deployment_factory):
    other = deployment_factory(display_name="Bot B")
    assert (
        agreement_selectors.agreement_by_question(
            reviewer, RequestFilters(deployment_id=other.pk)
        ).questions
        == []
    )
    capped = agreement_selectors.agreement_by_question(reviewer, RequestFilters(), cap=2)
    assert (capped.turns, capped.capped) == (2, True)
    # The two newest turns with two answers are `changed` and `differ` (`alone` and `unrated`,
    # newer or not, have fewer): both count for the thumbs question.
    assert by_question(capped)["answer_correct"].agreement.items == 2


def test_three_reviewers_get_fleiss_kappa(rated, admin_user, reviewer):
    feedback_services.rating_create(
        turn=rated["agree"], reviewer=admin_user, text_assessments=said(answer_correct="negative")
    )
    thumbs = by_question(agreement_selectors.agreement_by_question(reviewer, RequestFilters()))[
        "answer_correct"
    ].agreement
    assert thumbs.reviewers == 3 and thumbs.figure("cohens_kappa") is None
    fleiss = thumbs.figure("fleiss_kappa")
    # Items with 2 labels (differ, changed) outnumber the one with 3 (agree).
    assert fleiss.items == 2 and "2 items with 2 labels" in fleiss.note


def test_reviewers_get_the_agreement_panel_loaded_when_opened(client, rated, reviewer, bot):
    client.force_login(reviewer)
    page = client.get(PAGE, {"deployment": bot.pk}).content.decode()
    assert f'hx-get="{PANEL}?deployment={bot.pk}"' in page and "<details" in page
    response = client.get(PANEL, {"deployment": bot.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # the partial only
    thumbs = html[html.index('id="agreement-answer_correct"') : html.index('id="agreement-score"')]
    text = unescape(thumbs)
    assert "Cohen's κ" in text and "Krippendorff's α (nominal)" in text
    assert "67 %" in text and "3 turns with two or more answers, from 2 reviewers" in text
    assert "slight" in text and "67 % of pairs of reviewers gave the same answer" in text
    assert f'href="/requests/?deployment={bot.pk}&amp;disagree=answer_correct"' in thumbs
    assert "show disagreements" in thumbs
    assert "Cohen's κ (quadratic weights)" in unescape(html)
    assert "Krippendorff's α (interval)" in unescape(html)


def test_stakeholders_get_no_panel_and_a_403(client, rated, stakeholder):
    client.force_login(stakeholder)
    assert "Agreement between reviewers" not in client.get(PAGE).content.decode()
    assert client.get(PANEL).status_code == 403


def test_the_panel_explains_bad_filters(client, rated, reviewer):
    client.force_login(reviewer)
    response = client.get(PANEL, {"min_ms": "9", "max_ms": "1"})
    assert response.status_code == 400
    assert "highest latency is below the lowest" in response.content.decode()


def test_the_disagreements_filter_shows_each_reviewers_answer(client, rated, reviewer, bot):
    client.force_login(reviewer)
    html = client.get(PAGE, {"disagree": "answer_correct"}).content.decode()
    assert re.findall(r'href="/requests/([^/"]+)/"', html) == [
        rated["differ"].databricks_request_id
    ]
    assert "bob-reviewer → <strong>positive</strong>" in html
    assert "rita-reviewer → <strong>negative</strong>" in html
    assert "Reviewers differ on: answer_correct" in html  # the chip
    # Both gave 2 on `differ`: no disagreement on the score anywhere... but 4 and 5 on `agree`.
    html = client.get(PAGE, {"disagree": "score"}).content.decode()
    assert re.findall(r'href="/requests/([^/"]+)/"', html) == [rated["agree"].databricks_request_id]
    assert "bob-reviewer → <strong>5</strong>" in html


def test_the_api_answers_the_figures_to_reviewers_only(
    api_client, rated, reviewer, stakeholder, bot
):
    api_client.force_authenticate(reviewer)
    body = api_client.get(API, {"deployment": bot.pk}).json()
    thumbs = next(q for q in body["questions"] if q["question"] == "answer_correct")
    figures = {f["key"]: f for f in thumbs["figures"]}
    assert set(figures) == {"percent_agreement", "cohens_kappa", "krippendorff_alpha"}
    assert figures["cohens_kappa"]["value"] == pytest.approx(0.0)
    assert (thumbs["items"], thumbs["reviewers"], body["turns"]) == (3, 2, 3)
    assert api_client.get(API, {"since": "tomorrow"}).status_code == 400
    api_client.force_authenticate(stakeholder)
    assert api_client.get(API).status_code == 403

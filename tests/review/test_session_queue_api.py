"""The review-sessions API, the reviewer's queue: Next, an item with its labels, labelling,
skipping, an admin's final label, agreement and disagreements. Who may do what, closed
sessions, invalid labels, and that nothing changes when a request is refused."""

import pytest

from feedback.models import Delivery, Rating
from review import queue
from review.models import ReviewItem, ReviewSkip, ReviewSlot
from tests.review.sessions_support import label, make_session

pytestmark = pytest.mark.django_db


def url(session, tail: str = "") -> str:
    return f"/api/v1/review-sessions/{session.pk}/{tail}"


def snapshot() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        list(ReviewItem.objects.values_list("pk", "done_count", "consensus_id")),
        list(ReviewSlot.objects.values_list("pk", "state", "reviewer_id", "lease_until")),
        list(ReviewSkip.objects.values_list("pk", "reason")),
        list(Rating.objects.values_list("pk", "is_current")),
        Delivery.objects.count(),
    )


def close(session) -> None:
    session.state = "closed"
    session.save()


def test_next_claims_the_oldest_item_and_says_when_nothing_is_left(
    api_client, admin_user, bot, reviewer
):
    session, turns = make_session(admin_user, bot, [reviewer], turns=1)
    api_client.force_authenticate(reviewer)
    response = api_client.post(url(session, "next/"))
    assert response.status_code == 200, response.json()
    item = response.json()
    assert item["request_id"] == turns[0].databricks_request_id
    assert (item["question"], item["answer"]) == (turns[0].request, turns[0].response)
    assert item["state"] == "claimed" and item["lease_until"]
    again = api_client.post(url(session, "next/")).json()
    assert again["id"] == item["id"]  # held, its lease renewed
    labelled = api_client.post(
        url(session, f"items/{item['id']}/labels/"),
        {"text_assessment": label("positive")},
        format="json",
    )
    assert labelled.status_code == 201
    done = api_client.post(url(session, "next/"))
    assert done.status_code == 204 and done.content == b""


def test_next_is_refused_in_closed_and_unassigned_sessions(
    api_client, admin_user, bot, reviewer, bob
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    before = snapshot()
    api_client.force_authenticate(bob)
    assert api_client.post(url(session, "next/")).status_code == 404
    close(session)
    api_client.force_authenticate(reviewer)
    response = api_client.post(url(session, "next/"))
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["This review session is closed; nothing can be labelled in it."]
    }
    assert api_client.post("/api/v1/review-sessions/999999/next/").status_code == 404
    assert snapshot() == before


def test_a_label_is_saved_as_a_rating(api_client, admin_user, bot, reviewer):
    session, turns = make_session(admin_user, bot, [reviewer], turns=1)
    api_client.force_authenticate(reviewer)
    item = api_client.post(url(session, "next/")).json()
    response = api_client.post(
        url(session, f"items/{item['id']}/labels/"),
        {"text_assessment": {**label("negative", "rude"), "free_text_comment": "Curt."}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    rating = response.json()
    assert rating["request_id"] == turns[0].databricks_request_id
    assert rating["source"] == {"id": reviewer.email, "type": "human"}
    assert rating["text_assessments"][0]["ratings"]["tone"] == {"value": "rude"}
    assert rating["is_current"] is True
    saved = Rating.objects.get(pk=rating["id"])
    assert saved.reviewer == reviewer and saved.text_assessment["free_text_comment"] == "Curt."
    assert ReviewItem.objects.get(pk=item["id"]).done_count == 1


def test_invalid_labels_name_each_problem_and_save_nothing(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    schema = session.label_schemas.get(name="tone")
    schema.required = True
    schema.save()
    api_client.force_authenticate(reviewer)
    item = api_client.post(url(session, "next/")).json()
    labels = url(session, f"items/{item['id']}/labels/")
    before = snapshot()
    response = api_client.post(
        labels,
        {"text_assessment": {"ratings": {"answer_correct": {"value": "maybe"}, "x": {"value": 1}}}},
        format="json",
    )
    assert response.status_code == 400
    problems = response.json()["text_assessment"]
    assert len(problems) == 3, problems
    assert any(p.startswith("ratings.answer_correct: the value") for p in problems)
    assert any(p.startswith("ratings.x: there is no such question here") for p in problems)
    assert "Required: tone." in problems
    for body, field in (
        ({}, "text_assessment"),
        ({"text_assessment": "positive"}, "text_assessment"),
        ({"text_assessment": label("positive"), "source": "me"}, "source"),
        ({"text_assessment": label("positive"), "retrieval_assessments": [{}]}, None),
    ):
        refused = api_client.post(labels, body, format="json")
        assert refused.status_code == 400, refused.json()
        assert field is None or field in refused.json(), refused.json()
    assert snapshot() == before


def test_labels_are_refused_in_a_closed_session_and_by_the_unassigned(
    api_client, admin_user, bot, reviewer, bob
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    api_client.force_authenticate(reviewer)
    item = api_client.post(url(session, "next/")).json()
    labels = url(session, f"items/{item['id']}/labels/")
    body = {"text_assessment": label("positive")}
    before = snapshot()
    api_client.force_authenticate(bob)
    assert api_client.post(labels, body, format="json").status_code == 404
    close(session)
    api_client.force_authenticate(reviewer)
    response = api_client.post(labels, body, format="json")
    assert response.status_code == 400
    assert "closed" in response.json()["non_field_errors"][0]
    assert snapshot() == before


def test_an_item_with_its_reviewers_takes_no_other_label(
    api_client, admin_user, bot, reviewer, bob
):
    session, _ = make_session(admin_user, bot, [reviewer, bob], turns=1)
    item = queue.item_next(session=session, reviewer=reviewer)
    before = snapshot()
    api_client.force_authenticate(bob)
    response = api_client.post(
        url(session, f"items/{item.pk}/labels/"),
        {"text_assessment": label("positive")},
        format="json",
    )
    assert response.status_code == 400
    assert "already has its 1 reviewer(s)" in response.json()["non_field_errors"][0]
    assert snapshot() == before


def test_an_item_shows_my_label_to_me_and_every_label_to_admins(
    api_client, admin_user, bot, reviewer, bob
):
    session, turns = make_session(admin_user, bot, [reviewer, bob], turns=1, per_item=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=bob, text_assessment=label("negative"))
    detail = url(session, f"items/{item.pk}/")

    api_client.force_authenticate(reviewer)
    mine = api_client.get(detail).json()
    assert mine["request_id"] == turns[0].databricks_request_id
    assert mine["question"] == "Question 0" and mine["state"] == "done"
    assert [entry["reviewer"] for entry in mine["labels"]] == ["rita-reviewer"]
    assert mine["labels"][0]["rating"]["text_assessments"][0]["ratings"]["answer_correct"] == {
        "value": "positive"
    }
    assert mine["consensus"] is None

    queue.item_settle(item=item, admin=admin_user, text_assessment=label("negative"))
    api_client.force_authenticate(admin_user)
    everyone = api_client.get(detail).json()
    assert [entry["reviewer"] for entry in everyone["labels"]] == ["rita-reviewer", "bob"]
    assert everyone["consensus"]["source"]["id"] == "consensus:alice-admin@example.com"
    assert everyone["settled"] is True


def test_unknown_items_and_items_of_other_sessions_are_not_found(
    api_client, admin_user, bot, reviewer, bob
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    other, _ = make_session(admin_user, bot, [reviewer], turns=1)
    foreign = other.items.get()
    api_client.force_authenticate(reviewer)
    before = snapshot()
    for tail in (f"items/{foreign.pk}/", "items/999999/"):
        assert api_client.get(url(session, tail)).status_code == 404
        assert api_client.post(url(session, tail + "skip/")).status_code == 404
        labels = api_client.post(
            url(session, tail + "labels/"), {"text_assessment": label("positive")}, format="json"
        )
        assert labels.status_code == 404
    api_client.force_authenticate(bob)
    assert api_client.get(url(other, f"items/{foreign.pk}/")).status_code == 404
    assert snapshot() == before


def test_skip_gives_the_item_back(api_client, admin_user, bot, reviewer, bob):
    session, _ = make_session(admin_user, bot, [reviewer, bob], turns=2)
    api_client.force_authenticate(reviewer)
    item = api_client.post(url(session, "next/")).json()
    skip = url(session, f"items/{item['id']}/skip/")
    response = api_client.post(skip, {"reason": "  Not my field "}, format="json")
    assert response.status_code == 204
    assert ReviewSkip.objects.get().reason == "Not my field"
    assert api_client.post(url(session, "next/")).json()["id"] != item["id"]
    api_client.force_authenticate(bob)
    assert api_client.post(url(session, "next/")).json()["id"] == item["id"]


def test_refused_skips_change_nothing(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    item = queue.item_next(session=session, reviewer=reviewer)
    skip = url(session, f"items/{item.pk}/skip/")
    api_client.force_authenticate(reviewer)
    before = snapshot()
    too_long = api_client.post(skip, {"reason": "x" * 501}, format="json")
    assert too_long.status_code == 400 and "reason" in too_long.json()
    assert api_client.post(skip, {"why": "x"}, format="json").status_code == 400
    close(session)
    assert "closed" in api_client.post(skip).json()["non_field_errors"][0]
    assert snapshot() == before

    session.state = "open"
    session.save()
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    before = snapshot()
    response = api_client.post(skip)
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["You labelled this item; change your label instead of skipping."]
    }
    assert snapshot() == before


def test_an_admin_settles_an_item(api_client, admin_user, bot, reviewer, bob):
    session, _ = make_session(admin_user, bot, [reviewer, bob], turns=1, per_item=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=bob, text_assessment=label("negative"))
    settle = url(session, f"items/{item.pk}/settle/")
    api_client.force_authenticate(admin_user)
    response = api_client.post(settle, {"text_assessment": label("negative")}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["source"]["id"] == "consensus:alice-admin@example.com"
    item.refresh_from_db()
    assert item.consensus_id == response.json()["id"] and item.settled_by == admin_user


def test_refused_settlements_change_nothing(api_client, admin_user, bot, reviewer, bob):
    session, _ = make_session(admin_user, bot, [reviewer, bob], turns=1, per_item=2)
    item = queue.item_next(session=session, reviewer=reviewer)
    settle = url(session, f"items/{item.pk}/settle/")
    before = snapshot()
    api_client.force_authenticate(reviewer)
    response = api_client.post(settle, {"text_assessment": label("negative")}, format="json")
    assert response.status_code == 403
    api_client.force_authenticate(admin_user)
    invalid = api_client.post(
        settle, {"text_assessment": label("negative", "shouty")}, format="json"
    )
    assert invalid.status_code == 400
    assert invalid.json()["text_assessment"][0].startswith("ratings.tone: the value")
    close(session)
    closed = api_client.post(settle, {"text_assessment": label("negative")}, format="json")
    assert closed.json() == {"non_field_errors": ["This review session is closed."]}
    assert snapshot() == before


def test_agreement_and_disagreements(api_client, admin_user, bot, reviewer, bob):
    session, turns = make_session(admin_user, bot, [reviewer, bob], turns=2, per_item=2)
    for value in ("positive", "negative"):
        item = queue.item_next(session=session, reviewer=reviewer)
        queue.item_label_save(item=item, reviewer=reviewer, text_assessment=label("positive"))
        queue.item_next(session=session, reviewer=bob)
        queue.item_label_save(item=item, reviewer=bob, text_assessment=label(value))

    api_client.force_authenticate(reviewer)
    agreement = api_client.get(url(session, "agreement/")).json()
    correct, tone = agreement["label_schemas"]
    assert (correct["label_schema"], correct["level"], correct["items"]) == (
        "answer_correct",
        "nominal",
        2,
    )
    assert correct["figures"][0] == {
        "key": "percent_agreement",
        "name": "Percent agreement",
        "value": 0.5,
        "items": 2,
        "reading": correct["figures"][0]["reading"],
        "note": correct["figures"][0]["note"],
    }
    assert tone["figures"][0]["value"] == 1.0
    # As on the session's page, everyone who works in it sees where reviewers differ.
    [differ] = api_client.get(url(session, "disagreements/")).json()
    assert differ["request_id"] == turns[1].databricks_request_id
    assert differ["label_schemas"] == ["answer_correct"]
    assert [entry["reviewer"] for entry in differ["labels"]] == ["rita-reviewer", "bob"]
    assert differ["consensus"] is None

    item = session.items.get(turn=turns[1])
    queue.item_settle(item=item, admin=admin_user, text_assessment=label("negative"))
    api_client.force_authenticate(admin_user)
    [settled] = api_client.get(url(session, "disagreements/")).json()
    assert settled["consensus"]["source"]["id"] == "consensus:alice-admin@example.com"


def test_agreement_and_disagreements_are_hidden_from_the_unassigned(
    api_client, admin_user, bot, reviewer, bob
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    api_client.force_authenticate(bob)
    assert api_client.get(url(session, "agreement/")).status_code == 404
    assert api_client.get(url(session, "disagreements/")).status_code == 404


def test_turns_of_a_deployment_i_may_not_see_are_not_offered(
    api_client, admin_user, bot, reviewer, deployment_factory
):
    from review import services
    from tests.support.turns import logged_turn

    secret = deployment_factory(display_name="Secret")
    secret.allowed_users.set([admin_user])
    session, _ = make_session(admin_user, bot, [reviewer], turns=0)
    services.session_save(
        user=admin_user, session=session, data={"deployments": [bot.pk, secret.pk]}
    )
    hidden, shown = logged_turn(secret, admin_user), logged_turn(bot, admin_user)
    services.items_add(session=session, user=admin_user, turns=[hidden, shown])
    api_client.force_authenticate(reviewer)
    offered = api_client.post(url(session, "next/")).json()
    assert offered["request_id"] == shown.databricks_request_id
    listed = api_client.get(url(session, "items/")).json()["results"]
    assert [row["request_id"] for row in listed] == [shown.databricks_request_id]
    hidden_item = session.items.get(turn=hidden)
    assert api_client.get(url(session, f"items/{hidden_item.pk}/")).status_code == 404
    api_client.force_authenticate(admin_user)
    first = api_client.post(url(session, "next/")).json()
    assert first["request_id"] == hidden.databricks_request_id

"""The review-sessions API, sessions and items: list, create, read, change and close a session;
add turns and list them. Who may do what, and that nothing changes when a request is refused.
The queue's endpoints (Next, labels, skip, settle, agreement) are in test_session_queue_api.py."""

import pytest

from feedback.models import Rating
from review import queue
from review.models import ReviewItem, ReviewSession, ReviewSkip, ReviewSlot
from tests.review.sessions_support import label, make_session
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/review-sessions/"


def snapshot() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        list(ReviewSession.objects.values_list("pk", "name", "state", "reviewers_per_item")),
        list(ReviewItem.objects.values_list("pk", "turn_id")),
        list(ReviewSlot.objects.values_list("pk", "state", "reviewer_id", "lease_until")),
        list(ReviewSkip.objects.values_list("pk", "reason")),
        list(Rating.objects.values_list("pk", "is_current")),
    )


def test_reviewers_list_the_sessions_assigned_to_them_with_progress(
    api_client, admin_user, bot, reviewer, bob, stakeholder
):
    mine, _ = make_session(admin_user, bot, [reviewer], turns=3)
    make_session(admin_user, bot, [bob], turns=1)
    api_client.force_authenticate(reviewer)
    body = api_client.get(SESSIONS).json()
    assert [s["id"] for s in body["results"]] == [mine.pk]
    [session] = body["results"]
    assert session["label_schemas"] == ["answer_correct", "tone"]
    assert session["assigned_users"] == ["rita-reviewer"]
    assert session["created_by"] == "alice-admin"
    assert session["progress"]["items"] == 3
    assert session["progress"]["mine_available"] == 3
    assert session["progress"]["labels_needed"] == 3

    api_client.force_authenticate(admin_user)
    assert api_client.get(SESSIONS).json()["count"] == 2
    api_client.force_authenticate(stakeholder)
    assert api_client.get(SESSIONS).json()["count"] == 0
    api_client.force_authenticate(None)
    assert api_client.get(SESSIONS).status_code == 401


def test_an_admin_creates_a_session(api_client, admin_user, bot, reviewer):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        SESSIONS,
        {
            "name": "Week 50",
            "instructions": "Be *kind*.",
            "label_schemas": ["answer_correct"],
            "deployments": [bot.pk],
            "assigned_users": ["rita-reviewer"],
            "assigned_groups": ["reviewer"],
            "reviewers_per_item": 2,
            "due_at": "2026-12-24T12:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    session = ReviewSession.objects.get(pk=body["id"])
    assert (session.name, session.reviewers_per_item, session.created_by) == (
        "Week 50",
        2,
        admin_user,
    )
    assert body["assigned_groups"] == ["reviewer"]
    assert body["due_at"] == "2026-12-24T12:00:00Z"
    assert body["state"] == "open" and body["saved_filter"] is None
    assert body["progress"]["items"] == 0


def test_a_session_with_a_saved_filter_takes_the_matching_turns(api_client, admin_user, bot):
    refund = logged_turn(bot, admin_user, request="Can I get a refund?")
    logged_turn(bot, admin_user, request="Where is my parcel?")
    logged_turn(bot, admin_user, request="A refund, please", status_code=500, error="Boom")
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        SESSIONS,
        {
            "name": "Refunds",
            "label_schemas": ["answer_correct"],
            "deployments": [bot.pk],
            "saved_filter": {"q": "refund"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["saved_filter"] == {"q": "refund"}
    # The failed turn matches too, but has no answer to label.
    assert list(ReviewItem.objects.values_list("turn_id", flat=True)) == [refund.pk]


def test_every_problem_of_a_new_session_is_named_and_nothing_is_saved(api_client, admin_user, bot):
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        SESSIONS,
        {"label_schemas": ["nope"], "assigned_users": ["ghost"], "reviewers_per_item": 3},
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert errors["label_schemas"] == ["No such label schema: nope."]
    assert errors["assigned_users"] == ["No such assigned user: ghost."]
    assert errors["deployments"] == ["Give at least one."]
    assert "name" in errors
    shapes = api_client.post(
        SESSIONS,
        {"name": "x", "deployments": "all", "reviewers_per_item": 11, "colour": "red"},
        format="json",
    )
    assert shapes.status_code == 400
    assert set(shapes.json()) == {"colour"}  # unknown fields first: nothing else is looked at
    shapes = api_client.post(
        SESSIONS, {"name": "x", "deployments": "all", "reviewers_per_item": 11}, format="json"
    )
    assert set(shapes.json()) == {"deployments", "reviewers_per_item"}
    assert not ReviewSession.objects.exists()


def test_only_admins_create_or_change_sessions(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    before = snapshot()
    api_client.force_authenticate(reviewer)
    created = api_client.post(
        SESSIONS,
        {"name": "Mine", "label_schemas": ["answer_correct"], "deployments": [bot.pk]},
        format="json",
    )
    assert created.status_code == 403
    assert created.json()["detail"] == "Only admins may create or change review sessions."
    closed = api_client.patch(f"{SESSIONS}{session.pk}/", {"state": "closed"}, format="json")
    assert closed.status_code == 403
    assert snapshot() == before


def test_a_session_is_read_by_those_assigned_and_hidden_from_others(
    api_client, admin_user, bot, reviewer, bob, stakeholder
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=2)
    url = f"{SESSIONS}{session.pk}/"
    api_client.force_authenticate(reviewer)
    body = api_client.get(url).json()
    assert (body["name"], body["progress"]["items"]) == ("Week 49", 2)
    for user in (bob, stakeholder):
        api_client.force_authenticate(user)
        assert api_client.get(url).status_code == 404
        assert api_client.get(url + "items/").status_code == 404
    api_client.force_authenticate(admin_user)
    assert api_client.get(url).status_code == 200
    assert api_client.get(f"{SESSIONS}999999/").status_code == 404
    assert api_client.patch(f"{SESSIONS}999999/", {"name": "x"}, format="json").status_code == 404


def test_an_admin_closes_and_reopens_a_session(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    api_client.force_authenticate(admin_user)
    url = f"{SESSIONS}{session.pk}/"
    closed = api_client.patch(url, {"state": "closed"}, format="json")
    assert closed.status_code == 200, closed.json()
    assert closed.json()["state"] == "closed" and closed.json()["name"] == "Week 49"
    session.refresh_from_db()
    assert session.state == "closed"
    assert api_client.patch(url, {"state": "open"}, format="json").json()["state"] == "open"


def test_a_refused_change_saves_nothing(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    api_client.force_authenticate(admin_user)
    url = f"{SESSIONS}{session.pk}/"
    before = snapshot()
    response = api_client.patch(url, {"state": "paused"}, format="json")
    assert response.status_code == 400 and "state" in response.json()
    # It has items, so its reviewers per item is fixed; the name given with it is not saved.
    response = api_client.patch(url, {"name": "Renamed", "reviewers_per_item": 2}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "reviewers_per_item": ["The session has items; this cannot change now."]
    }
    assert snapshot() == before


def test_items_are_listed_with_where_i_stand_on_each(api_client, admin_user, bot, reviewer, bob):
    session, turns = make_session(admin_user, bot, [reviewer, bob], turns=4)
    done = queue.item_next(session=session, reviewer=reviewer)
    queue.item_label_save(item=done, reviewer=reviewer, text_assessment=label("positive"))
    skipped = queue.item_next(session=session, reviewer=reviewer)
    queue.item_skip(item=skipped, reviewer=reviewer, reason="Not mine")
    taken = queue.item_next(session=session, reviewer=bob)  # the skipped one goes to bob
    held = queue.item_next(session=session, reviewer=reviewer)

    api_client.force_authenticate(reviewer)
    body = api_client.get(f"{SESSIONS}{session.pk}/items/").json()
    assert body["count"] == 4
    rows = {row["id"]: row for row in body["results"]}
    assert [row["request_id"] for row in body["results"]] == [
        t.databricks_request_id for t in turns
    ]
    assert taken == skipped
    assert rows[done.pk]["state"] == "done" and rows[done.pk]["done_count"] == 1
    assert rows[skipped.pk]["state"] == "skipped"
    assert rows[held.pk]["state"] == "claimed" and rows[held.pk]["lease_until"]
    [last] = [row for row in body["results"] if row["id"] not in (done.pk, skipped.pk, held.pk)]
    assert last["state"] == "open" and last["lease_until"] is None

    api_client.force_authenticate(bob)
    rows = {
        row["id"]: row for row in api_client.get(f"{SESSIONS}{session.pk}/items/").json()["results"]
    }
    assert rows[done.pk]["state"] == "full"
    assert rows[skipped.pk]["state"] == "claimed"


def test_items_are_paginated(api_client, admin_user, bot, reviewer, monkeypatch):
    monkeypatch.setattr("rest_framework.pagination.PageNumberPagination.page_size", 2)
    session, turns = make_session(admin_user, bot, [reviewer], turns=3)
    api_client.force_authenticate(reviewer)
    first = api_client.get(f"{SESSIONS}{session.pk}/items/").json()
    assert first["count"] == 3 and len(first["results"]) == 2
    second = api_client.get(first["next"]).json()
    assert [r["request_id"] for r in second["results"]] == [turns[2].databricks_request_id]


def test_an_admin_adds_turns_by_request_id_or_by_filters(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=0)
    new = [logged_turn(bot, admin_user) for _ in range(2)]
    slow = logged_turn(bot, admin_user, execution_time_ms=9000)
    failed = logged_turn(bot, admin_user, status_code=500, error="Boom", execution_time_ms=9000)
    api_client.force_authenticate(admin_user)
    url = f"{SESSIONS}{session.pk}/items/"
    ids = [t.databricks_request_id for t in new]
    response = api_client.post(url, {"request_ids": ids}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"added": 2, "items": 2}
    assert api_client.post(url, {"request_ids": ids}, format="json").json() == {
        "added": 0,
        "items": 2,
    }
    by_filter = api_client.post(url, {"filters": {"min_ms": "5000"}}, format="json")
    assert by_filter.json() == {"added": 1, "items": 3}
    assert session.items.filter(turn=slow).exists()
    assert not session.items.filter(turn=failed).exists()  # no answer to label


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "non_field_errors"),
        ({"request_ids": [], "filters": {}}, "non_field_errors"),
        ({"request_ids": ["no-such-request"]}, "request_ids"),
        ({"request_ids": "abc"}, "request_ids"),
        ({"filters": {"status": "sideways"}}, "filters"),
        ({"turns": [1]}, "turns"),
    ],
)
def test_a_refused_add_adds_nothing(api_client, admin_user, bot, reviewer, body, field):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    logged_turn(bot, admin_user)
    api_client.force_authenticate(admin_user)
    before = snapshot()
    response = api_client.post(f"{SESSIONS}{session.pk}/items/", body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert snapshot() == before


def test_turns_of_another_deployment_are_refused(
    api_client, admin_user, bot, reviewer, deployment_factory
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=0)
    here, elsewhere = logged_turn(bot, admin_user), logged_turn(deployment_factory(), admin_user)
    api_client.force_authenticate(admin_user)
    response = api_client.post(
        f"{SESSIONS}{session.pk}/items/",
        {"request_ids": [here.databricks_request_id, elsewhere.databricks_request_id]},
        format="json",
    )
    assert response.status_code == 400
    assert "not of this session's deployments" in response.json()["non_field_errors"][0]
    assert not ReviewItem.objects.exists()


def test_a_closed_session_takes_no_turns_and_only_admins_add(api_client, admin_user, bot, reviewer):
    session, _ = make_session(admin_user, bot, [reviewer], turns=0)
    session.state = "closed"
    session.save()
    turn = logged_turn(bot, admin_user)
    url = f"{SESSIONS}{session.pk}/items/"
    body = {"request_ids": [turn.databricks_request_id]}
    api_client.force_authenticate(admin_user)
    response = api_client.post(url, body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["This session is closed; reopen it to add turns."]
    }
    session.state = "open"
    session.save()
    api_client.force_authenticate(reviewer)
    assert api_client.post(url, body, format="json").status_code == 403
    assert not ReviewItem.objects.exists()


def test_malformed_json_is_refused(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    response = api_client.post(SESSIONS, '{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not ReviewSession.objects.exists()


ENDPOINTS = [
    ("get", ""),
    ("get", "items/"),
    ("post", "next/"),
    ("get", "items/{item}/"),
    ("post", "items/{item}/labels/"),
    ("post", "items/{item}/skip/"),
    ("get", "agreement/"),
    ("get", "disagreements/"),
]


def test_every_endpoint_hides_a_session_from_the_unassigned(
    api_client, admin_user, bot, reviewer, bob, stakeholder
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    item = queue.item_next(session=session, reviewer=reviewer)
    before = snapshot()
    for user in (bob, stakeholder):
        api_client.force_authenticate(user)
        for method, tail in ENDPOINTS:
            body = {"text_assessment": label("positive")} if "labels" in tail else {}
            response = getattr(api_client, method)(
                f"{SESSIONS}{session.pk}/{tail.format(item=item.pk)}", body, format="json"
            )
            assert response.status_code == 404, (user, method, tail, response.status_code)
    assert snapshot() == before


def test_unknown_sessions_and_items_are_not_found_even_by_admins(
    api_client, admin_user, bot, reviewer
):
    session, _ = make_session(admin_user, bot, [reviewer], turns=1)
    item = session.items.get()
    api_client.force_authenticate(admin_user)
    before = snapshot()
    for method, tail in [
        *ENDPOINTS,
        ("patch", ""),
        ("post", "items/"),
        ("post", "items/{item}/settle/"),
    ]:
        missing = f"{SESSIONS}999999/{tail.format(item=item.pk)}"
        response = getattr(api_client, method)(missing, {}, format="json")
        assert response.status_code == 404, (method, tail, response.status_code)
    for tail in ("items/999999/", "items/999999/settle/"):
        method = "post" if "settle" in tail else "get"
        response = getattr(api_client, method)(
            f"{SESSIONS}{session.pk}/{tail}", {"text_assessment": label("positive")}, format="json"
        )
        assert response.status_code == 404
    assert snapshot() == before

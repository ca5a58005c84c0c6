"""Runs in the browser: the list, a run's page (progress, metrics, rows with scores and links to
each answer's trace, agent text escaped), two runs compared, and "Review this run" making a
review session of all rows or of the rows where evaluators disagree. Runs are worked by their
real lanes, in this process, against the demo agent."""

import threading

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect

from evaluation import lanes, run_review, runs
from evaluation.models import RunRow
from feedback.models import LabelSchema
from review.models import ReviewItem, ReviewSession
from tests.chat.test_chat_browser import log_in
from tests.evaluation.runs_support import QUESTIONS, demo_agent_deployment, upload_questions

JUDGE = {"name": "judged", "deployment": "judge",
         "column_mapping": {"message": "Answer: ${run.outputs.answer}\nExpected: "
                            "${data.expected_response}"}}  # fmt: skip


def batch(name: str, **mapping) -> dict:
    """A batch run file of the faq dataset to the demo agent."""
    return {"name": name, "deployment": "rag", "data": "faq",
            "column_mapping": {"message": "${data.question}", **mapping}}  # fmt: skip


def worked(user, spec):
    run = runs.run_create(user=user, spec=spec)
    assert lanes.lane_run(run.pk, 8) is False
    run.refresh_from_db()
    return run


@pytest.fixture
def evaluated(transactional_db, demo_agent, admin_user):
    demo_agent_deployment(demo_agent, name="rag")
    demo_agent_deployment(demo_agent, name="judge", judge=True)
    LabelSchema.objects.get_or_create(
        name="answer_correct", defaults={"title": "Correct?", "input_type": "thumbs"}
    )
    rows = [{"question": q, "expected_response": facts[0]} for q, facts in QUESTIONS]
    rows.append({"question": "<script>alert(1)</script> What is a trace?",
                 "expected_response": "trace"})  # fmt: skip
    upload_questions(rows=rows)
    first_batch = worked(admin_user, batch("b1"))
    other = worked(admin_user, batch("b2", **{"custom_inputs.top_k": 1}))
    first = worked(admin_user, {"name": "e1", "run": "b1", "evaluators": ["contains", JUDGE]})
    second = worked(admin_user, {"name": "e2", "run": "b2", "evaluators": ["contains", JUDGE]})
    return first_batch, other, first, second


def test_the_pages_show_runs_rows_scores_and_comparisons(client, admin_user, evaluated):
    _, _, first, _ = evaluated
    client.force_login(admin_user)
    listed = client.get("/runs/").content.decode()
    assert all(f'href="/runs/{name}/"' in listed for name in ("b1", "b2", "e1", "e2"))
    page = client.get("/runs/e1/").content.decode()
    assert "hx-trigger" not in page  # completed: the progress card no longer polls
    assert "7</strong> of 7 rows done" in page
    row = RunRow.objects.select_related("turn").get(run=first, position=1)
    assert f'href="/requests/{row.turn.databricks_request_id}/"' in page  # answer and trace
    assert row.scores["judged"]["rationale"] in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    # The evaluators' scores sit beside reviewers' ratings, badged with their source type.
    assessments = client.get("/assessments/").content.decode()
    assert "run:e1/judged" in assessments and ">LLM_JUDGE</span>" in assessments
    compared = client.get("/runs/e1/compare/?other=e2").content.decode()
    assert "judged" in compared and "contains" in compared
    assert client.get("/runs/e1/compare/?other=nope").status_code == 404
    waiting = runs.run_create(user=admin_user, spec=batch("b3"))
    progress = client.get(f"/runs/{waiting.name}/progress/").content.decode()
    assert 'hx-trigger="every 2s"' in progress and "0</strong> of 7 rows done" in progress
    client.post("/runs/b3/cancel/")
    assert "Resume" in client.get("/runs/b3/").content.decode()


def test_review_this_run_makes_a_session_of_its_rows(client, admin_user, reviewer, evaluated):
    _, _, first, _ = evaluated
    client.force_login(admin_user)
    scored = RunRow.objects.filter(run=first).select_related("turn").order_by("position")
    expected = [r.turn_id for r in scored if run_review.disagrees(r.scores)]
    response = client.post("/runs/e1/review/", {"rows": "disagreements",
                                                "label_schemas": ["answer_correct"]})  # fmt: skip
    if not expected:  # the judge and `contains` agreed on every row
        assert "No answered row of this run matches" in client.get("/runs/e1/").content.decode()
    else:
        session = ReviewSession.objects.get()
        assert response.url == f"/review/sessions/{session.pk}/"
        assert sorted(ReviewItem.objects.filter(session=session).values_list(
            "turn_id", flat=True)) == sorted(expected)  # fmt: skip
    client.post("/runs/b1/review/", {"rows": "all", "label_schemas": ["answer_correct"],
                                     "name": "All of b1"})  # fmt: skip
    everything = ReviewSession.objects.get(name="All of b1")
    assert everything.items.count() == 7
    client.force_login(reviewer)
    refused = client.post("/runs/b1/review/", {"rows": "all", "label_schemas": ["answer_correct"]})
    assert refused.status_code == 403


def test_the_batch_runs_disagreements_are_refused(client, admin_user, evaluated):
    client.force_login(admin_user)
    client.post("/runs/b1/review/", {"rows": "disagreements", "label_schemas": ["answer_correct"]})
    page = client.get("/runs/b1/").content.decode()
    assert "Only an evaluation run has evaluators to disagree." in page
    assert not ReviewSession.objects.exists()


@pytest.mark.browser
def test_a_runs_page_follows_its_progress_live(page: Page, live_server, transactional_db,
                                               demo_agent, django_user_model):  # fmt: skip
    rev = django_user_model.objects.create_user("rev", "rev@example.com", "a-long-password")
    rev.groups.add(Group.objects.get(name="reviewer"))
    demo_agent_deployment(demo_agent, name="rag")
    upload_questions()
    run = runs.run_create(user=rev, spec=batch("live"))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server)
    page.goto(f"{live_server.url}/runs/live/")
    progress = page.locator("#run-progress")
    expect(progress).to_contain_text("0 of 6 rows done")
    # The run works while the page is open (in a thread: Playwright holds this one's loop).
    lane = threading.Thread(target=lanes.lane_run, args=(run.pk, 8))
    lane.start()
    expect(progress).to_contain_text("6 of 6 rows done", timeout=15_000)
    lane.join(timeout=30)
    expect(progress).to_contain_text("Completed")
    # Once it ended the page reloads itself: each row's answer links to its turn and trace.
    answers = page.locator("table.run-rows a[href^='/requests/']")
    expect(answers).to_have_count(6)
    assert errors == []

"""Batch and evaluation runs through the API, worked by a real Celery worker on Redis against
the real demo agent: every row becomes one logged turn with its trace, evaluators score each
answer (built-ins and the demo agent playing a judge), scores become ratings of source CODE or
LLM_JUDGE, and a run file that cannot run is refused field by field with nothing saved."""

import asyncio
import threading
import time
import uuid

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import RequestLog
from agents.traces import normalize_trace
from evaluation import lanes, mapping, runs
from evaluation.models import RowStatus, RunRow, RunStatus
from feedback.models import Rating
from tests.evaluation.runs_support import (
    QUESTIONS,
    TRACING_DOC,
    demo_agent_deployment,
    upload_questions,
    wait_for_end,
)

pytestmark = pytest.mark.integration

JUDGE_MESSAGE = "Answer: ${run.outputs.answer}\nExpected: ${data.expected_response}"


def test_a_batch_run_then_an_evaluation_run(celery_worker_on_redis, demo_agent, api_client,
                                            reviewer):  # fmt: skip
    agent = demo_agent_deployment(demo_agent, name="rag")
    judge = demo_agent_deployment(demo_agent, name="judge", judge=True)
    upload_questions()
    api_client.force_authenticate(reviewer)
    made = api_client.post(
        "/api/v1/runs/",
        {
            "name": "nightly-1",
            "deployment": "rag",
            "data": "faq@1",
            "column_mapping": {"message": "${data.question}", "custom_inputs.top_k": 2},
            "concurrency": 4,
        },
        format="json",
    )
    assert made.status_code == 201, made.json()
    run = wait_for_end("nightly-1")
    assert run.status == RunStatus.COMPLETED
    rows = list(RunRow.objects.filter(run=run).select_related("turn"))
    assert [r.status for r in rows] == [RowStatus.DONE] * len(QUESTIONS)
    turns = RequestLog.objects.filter(deployment=agent)
    assert turns.count() == len(QUESTIONS)  # one turn a row
    for row, (question, _) in zip(rows, QUESTIONS, strict=True):
        assert row.turn.request == question and row.turn.error == ""
        assert row.turn.custom_inputs == {"top_k": 2}
        assert row.turn.request_metadata["run"] == "nightly-1"
        assert normalize_trace(row.turn.trace).span_count > 1  # the answer's trace is kept
    shown = api_client.get("/api/v1/runs/nightly-1/").json()
    assert shown["rows"] == {"total": 6, "done": 6, "in_flight": 0, "pending": 0, "errors": 0}
    assert shown["metrics"][0] == {
        "name": "error_rate", "value": 0.0, "count": 6, "errors": 0, "skipped": 0,
        "higher_is_better": False,
    }  # fmt: skip

    made = api_client.post(
        "/api/v1/runs/",
        {
            "name": "nightly-1-eval",
            "run": "nightly-1",
            "evaluators": [
                "contains",
                "expected_facts",
                "errors",
                "tokens",
                "exact_match",
                "latency",
                {"name": "found", "type": "retrieval_hit_rate"},
                {
                    "name": "judged",
                    "deployment": "judge",
                    "column_mapping": {"message": JUDGE_MESSAGE},
                },
                {
                    "name": "confused",
                    "deployment": judge.pk,
                    "column_mapping": {"message": "${run.outputs.answer}"},
                },
            ],
        },
        format="json",
    )
    assert made.status_code == 201, made.json()
    evaluation = wait_for_end("nightly-1-eval")
    assert evaluation.status == RunStatus.COMPLETED
    scored = {r.position: r for r in RunRow.objects.filter(run=evaluation).select_related("turn")}
    for row in rows:
        scores = scored[row.position].scores
        fact = QUESTIONS[row.position - 1][1][0]
        present = fact in row.turn.response.lower()
        assert scores["contains"] == {"value": present}
        assert scores["expected_facts"]["value"] == (1.0 if present else 0.0)
        assert scores["errors"]["value"] == 0
        assert (
            scores["tokens"]["value"] == normalize_trace(row.turn.trace).token_usage["total_tokens"]
        )
        assert scores["exact_match"] == {"value": row.turn.response.lower() == fact}
        assert scores["latency"] == {"value": row.turn.execution_time_ms}
        retrieved = {d.doc_uri for s in normalize_trace(row.turn.trace).iter_spans()
                     for d in s.documents or []}  # fmt: skip
        assert scores["found"]["value"] == (1.0 if TRACING_DOC in retrieved else 0.0)
        assert (
            0 <= scores["judged"]["value"] <= 1
            and "expected terms" in scores["judged"]["rationale"]
        )
        assert "did not answer {score, rationale}" in scores["confused"]["error"]
    metrics = {m["name"]: m for m in api_client.get("/api/v1/runs/nightly-1-eval/").json()[
        "metrics"]}  # fmt: skip
    contains_values = [scored[p].scores["contains"]["value"] for p in scored]
    assert metrics["contains"]["value"] == pytest.approx(sum(contains_values) / 6)
    assert metrics["confused"] | {} == {
        "name": "confused", "value": None, "count": 0, "errors": 6, "skipped": 0,
        "higher_is_better": True,
    }  # fmt: skip
    # Scores are ratings of the answers, of the evaluator's source, beside reviewers' ones.
    ratings = Rating.objects.filter(request__in=[r.turn for r in rows], reviewer=None)
    assert ratings.filter(source_type="CODE").count() == 7 * 6
    assert ratings.filter(source_type="LLM_JUDGE").count() == 6  # the confused judge: none
    assert ratings.filter(source_id="run:nightly-1-eval/judged").count() == 6
    # The judge's turns are logged too, on the judge's deployment: two judges, six rows.
    assert RequestLog.objects.filter(deployment=judge).count() == 12


@pytest.mark.django_db(transaction=True)
def test_a_lane_takes_back_a_dead_workers_rows_and_sends_each_once(demo_agent, reviewer):
    """A worker died holding two rows: one whose turn it had saved, one still at the agent.
    Once their leases run out, another lane links the saved turn without calling the agent
    again, and sends the other."""
    demo_agent_deployment(demo_agent, name="rag")
    upload_questions(rows=[{"question": q} for q, _ in QUESTIONS[:3]])
    run = runs.run_create(
        user=reviewer,
        spec={"name": "r", "deployment": "rag", "data": "faq",
              "column_mapping": {"message": "${data.question}"}},
    )  # fmt: skip
    dead = lanes._claim(run.pk, 2, uuid.uuid4())
    assert [r.position for r in dead.rows] == [1, 2]
    inputs = mapping.turn_inputs(run.column_mapping, mapping.Sources(dead.rows[0].dataset_row.data))
    saved = asyncio.run(
        lanes._turn(run, dead.rows[0], run.deployment_id, inputs, f"run-{run.pk}-1")
    )
    RunRow.objects.filter(run=run).update(lease_until=timezone.now())  # the leases run out
    assert lanes.lane_run(run.pk, 4) is False  # done: nothing to hand over
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    rows = list(RunRow.objects.filter(run=run))
    assert [r.status for r in rows] == [RowStatus.DONE] * 3
    assert rows[0].turn_id == saved.pk  # the dead worker's turn, not a second one
    assert RequestLog.objects.count() == 3
    assert [r.attempts for r in rows] == [2, 2, 1]


@pytest.mark.django_db(transaction=True)  # the lane's steps run in threads of their own
def test_deleting_a_deployment_or_a_runs_creator_is_not_blocked(deployment_factory, reviewer,
                                                                 admin_user):  # fmt: skip
    deployment_factory(display_name="rag")
    upload_questions()
    spec = {"deployment": "rag", "data": "faq", "column_mapping": {"message": "${data.question}"}}
    mine = runs.run_create(user=reviewer, spec={**spec, "name": "mine"})
    theirs = runs.run_create(user=admin_user, spec={**spec, "name": "theirs"})
    reviewer.delete()
    mine.refresh_from_db()
    assert mine.created_by is None
    assert lanes.lane_run(mine.pk, 4) is False  # nobody to send its rows as: cancelled
    mine.refresh_from_db()
    assert mine.status == RunStatus.CANCELLED
    agent_services.deployment_delete(deployment=theirs.deployment)
    assert not RunRow.objects.exists()


@pytest.mark.django_db(transaction=True)  # the lane's steps run in threads of their own
def test_a_cancelled_run_resumes_with_only_the_rows_not_answered(demo_agent, api_client,
                                                                  reviewer):  # fmt: skip
    demo_agent_deployment(demo_agent, name="rag")
    upload_questions()
    demo_agent.configure(latency_ms=300)
    run = runs.run_create(user=reviewer, spec={
        "name": "r", "deployment": "rag", "data": "faq", "concurrency": 1,
        "column_mapping": {"message": "${data.question}"}})  # fmt: skip
    lane = threading.Thread(target=lanes.lane_run, args=(run.pk, 1))
    lane.start()
    deadline = time.monotonic() + 20
    while not RunRow.objects.filter(run=run, status=RowStatus.DONE).exists():
        assert time.monotonic() < deadline, "no row was answered"
        time.sleep(0.05)
    api_client.force_authenticate(reviewer)
    assert api_client.post("/api/v1/runs/r/cancel/").json()["status"] == "cancelled"
    lane.join(timeout=20)
    answered = dict(RunRow.objects.filter(run=run, status=RowStatus.DONE).values_list(
        "position", "turn_id"))  # fmt: skip
    assert 1 <= len(answered) < 6
    resumed = api_client.post("/api/v1/runs/r/resume/").json()
    assert resumed["resumed_rows"] == 6 - len(answered) and resumed["status"] == "running"
    assert lanes.lane_run(run.pk, 1) is False
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    after = dict(RunRow.objects.filter(run=run).values_list("position", "turn_id"))
    assert {p: after[p] for p in answered} == answered  # answered rows were not sent again
    assert RequestLog.objects.count() == 6
    nothing = api_client.post("/api/v1/runs/r/resume/").json()
    assert nothing["resumed_rows"] == 0 and nothing["status"] == "completed"


@pytest.mark.django_db
def test_bad_requests_about_runs_are_refused_and_nothing_regresses_silently(
    api_client, deployment_factory, reviewer
):
    deployment_factory(display_name="rag")
    upload_questions()
    api_client.force_authenticate(reviewer)
    spec = {"name": "b", "deployment": "rag", "data": "faq",
            "column_mapping": {"message": "${data.question}"}}  # fmt: skip
    run = runs.run_create(user=reviewer, spec=spec)
    # Its lanes are alive (fresh heartbeat): a resume would double them.
    refused = api_client.post("/api/v1/runs/b/resume/")
    assert refused.status_code == 400 and "its lanes are alive" in str(refused.json())
    assert api_client.get("/api/v1/runs/b/rows/?after=²").status_code == 400
    for tolerance in ("nan", "-0.1", "x"):
        assert api_client.get(f"/api/v1/runs/b/compare/b/?tolerance={tolerance}").status_code == 400
    bad_type = api_client.post("/api/v1/runs/", {"run": "b", "evaluators": [{"type": ["x"]}]},
                               format="json")  # fmt: skip
    assert bad_type.status_code == 400 and "evaluators[0].type" in bad_type.json()
    # A metric the base measured and this run could not (every row an error) is a regression.
    RunRow.objects.filter(run=run).update(status=RowStatus.DONE, error="")
    other = runs.run_create(user=reviewer, spec={**spec, "name": "c"})
    RunRow.objects.filter(run=other).update(status=RowStatus.DONE, error="The agent failed.")
    from evaluation import run_selectors

    compared = {m["name"]: m for m in run_selectors.run_compare(run, other)["metrics"]}
    assert compared["error_rate"]["regressed"] is True  # 0 → 1
    assert compared["latency_p50_ms"]["regressed"] is False  # neither run measured it

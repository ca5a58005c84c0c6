"""The `reviewapp` command end to end, as a CI job drives it: against the app under uvicorn
started by the suite, two Celery worker processes on real Redis and the real demo agent. A
50-row batch run from a run file (its data file uploaded by the CLI) survives one worker being
killed mid-run with each row answered exactly once; an evaluation run with a built-in evaluator
and a judge deployment; show-metrics, compare, and the gates' exit codes."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from agents.models import RequestLog
from evaluation.models import RowStatus, Run, RunRow, RunStatus
from tests.conftest import _use_broker, require_server
from tests.evaluation.runs_support import QUESTIONS, demo_agent_deployment
from tests.support.celery_workers import start_worker

pytest_plugins = ["tests.support.asgi_server"]
pytestmark = pytest.mark.integration
REVIEWAPP = str(Path(sys.executable).parent / "reviewapp")
ROWS = 50

BATCH = """\
deployment: rag
data: questions.jsonl
column_mapping:
  message: ${data.question}
  custom_inputs.top_k: ${data.top_k}
concurrency: 6
"""
EVALUATION = """\
run: {base}
evaluators:
  - contains
  - name: judged
    deployment: judge
    column_mapping:
      message: "Answer: ${{run.outputs.answer}}\\nExpected: ${{data.expected_response}}"
"""


@pytest.fixture
def workers(redis_url, transactional_db, tmp_path):
    require_server(connection.vendor == "postgresql", "PostgreSQL (worker processes share it)")
    from reviewapp.celery import app

    previous = app.conf.broker_url
    _use_broker(app, redis_url)
    app.control.purge()
    # Short leases and lanes, so a dead worker's rows come back within seconds and lanes hand
    # over often; the second worker runs beat, which restarts a run whose lanes all died.
    knobs = dict(RUN_LEASE_SECONDS=4, RUN_LANE_SECONDS=5, RUN_SWEEP_SECONDS=3)
    started = [
        start_worker("w1", redis_url, tmp_path, **knobs),
        start_worker("w2", redis_url, tmp_path, beat=True, **knobs),
    ]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()
        _use_broker(app, previous)


def cli(tmp_path, server, token, *args) -> subprocess.CompletedProcess:
    env = {"REVIEWAPP_URL": server.url, "REVIEWAPP_TOKEN": token, "PATH": "/usr/bin:/bin",
           "COLUMNS": "200"}  # fmt: skip
    return subprocess.run([REVIEWAPP, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_cli_runs_batches_and_evaluations_and_gates_ci(
    workers, asgi_live_server, demo_agent, reviewer, tmp_path, settings
):
    settings.RUN_LANE_WIDTH = 2  # concurrency 6: three lanes, over both workers
    demo_agent_deployment(demo_agent, name="rag")
    demo_agent_deployment(demo_agent, name="judge", judge=True)
    token = Token.objects.create(user=reviewer).key
    rows = [{"question": QUESTIONS[i % 6][0], "top_k": 1 + i % 3,
             "expected_response": QUESTIONS[i % 6][1][0]} for i in range(ROWS)]  # fmt: skip
    (tmp_path / "questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "run.yml").write_text(BATCH)
    demo_agent.configure(latency_ms=400)

    made = subprocess.Popen(  # not waited for: the test kills a worker meanwhile
        [REVIEWAPP, "run", "create", "-f", "run.yml", "--name", "b1", "--stream"], cwd=tmp_path,
        env={"REVIEWAPP_URL": asgi_live_server.url, "REVIEWAPP_TOKEN": token,
             "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = workers[0]

    def victim_holds_rows():
        pids = {str(pid) for pid in victim.pids()}
        held = RunRow.objects.filter(run__name="b1", status=RowStatus.CLAIMED)
        done = RunRow.objects.filter(run__name="b1", status=RowStatus.DONE).count()
        return done >= 6 and any(w.rsplit(":", 1)[1] in pids for w in held.values_list(
            "worker", flat=True))  # fmt: skip

    wait_until(victim_holds_rows, 60, "the first worker to hold rows mid-run")
    victim.kill()
    out, err = made.communicate(timeout=180)
    assert made.returncode == 0, out + err
    assert "questions.jsonl → questions@1 (50 rows)" in out and "b1: completed" in out
    # No terminal: a progress line every 5 s, with the time left once rows get done.
    assert re.search(r"b1: running, \d+/50 rows, 0 error\(s\), \d+ in flight, ETA \d+:\d\d", out)

    run = Run.objects.get(name="b1")
    assert run.status == RunStatus.COMPLETED
    done = list(RunRow.objects.filter(run=run))
    assert len(done) == ROWS and {r.status for r in done} == {RowStatus.DONE}
    assert any(r.attempts > 1 for r in done)  # the dead worker's rows were taken back
    turns = RequestLog.objects.filter(request_metadata__run="b1")
    assert turns.count() == ROWS  # each row exactly once in the request log
    assert len({r.turn_id for r in done}) == ROWS
    assert sorted(int(t.request_metadata["run_row"]) for t in turns) == list(range(1, ROWS + 1))
    assert all(t.trace for t in turns)

    # An evaluation of it: a built-in evaluator and the demo agent playing a judge.
    demo_agent.configure(latency_ms=0)
    (tmp_path / "eval.yml").write_text(EVALUATION.format(base="b1"))
    evaluated = cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "eval.yml",
                    "--name", "e1", "--fail-if", "judged < 0")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "All gates passed." in evaluated.stdout
    shown = cli(tmp_path, asgi_live_server, token, "run", "show-metrics", "e1", "--json")
    metrics = {m["name"]: m for m in json.loads(shown.stdout)["metrics"]}
    scores = [r.scores for r in RunRow.objects.filter(run__name="e1")]
    assert metrics["contains"]["count"] == ROWS
    assert metrics["judged"]["value"] == pytest.approx(
        sum(s["judged"]["value"] for s in scores) / ROWS, abs=1e-6
    )
    gated = cli(tmp_path, asgi_live_server, token, "run", "stream", "e1", "--fail-if",
                "judged <= 1")  # fmt: skip
    assert gated.returncode == 1 and "FAILED: judged =" in gated.stderr

    # A second batch with one document retrieved a question: compare it, and gate on it.
    (tmp_path / "run2.yml").write_text(BATCH.replace("${data.top_k}", "1"))
    assert cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "run2.yml", "--name",
               "b2", "--stream").returncode == 0  # fmt: skip
    (tmp_path / "eval2.yml").write_text(EVALUATION.format(base="b2"))
    second = cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "eval2.yml",
                 "--name", "e2", "--fail-if-regression-from", "e1")  # fmt: skip
    compared = json.loads(cli(tmp_path, asgi_live_server, token, "run", "compare", "e1", "e2",
                              "--json").stdout)  # fmt: skip
    judged = next(m for m in compared["metrics"] if m["name"] == "judged")
    assert judged["base"] == metrics["judged"]["value"]
    assert second.returncode == (1 if judged["regressed"] else 0), second.stderr
    listed = json.loads(cli(tmp_path, asgi_live_server, token, "run", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["e2", "b2", "e1", "b1"]
    details = cli(tmp_path, asgi_live_server, token, "run", "show-details", "e1")
    assert details.returncode == 0 and "judged" in details.stdout


def test_a_run_file_that_cannot_run_is_refused_by_line(asgi_live_server, demo_agent, reviewer,
                                                       admin_user, tmp_path):  # fmt: skip
    demo_agent_deployment(demo_agent, name="rag")
    private = demo_agent_deployment(demo_agent, name="private")
    private.allowed_users.add(admin_user)
    token = Token.objects.create(user=reviewer).key
    (tmp_path / "q.jsonl").write_text('{"question": "What is a span?"}\n')
    (tmp_path / "run.yml").write_text(BATCH.replace("questions.jsonl", "gone.jsonl"))
    refused = cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "run.yml")
    assert refused.returncode == 2 and "run.yml:2: data: no file gone.jsonl" in refused.stderr
    (tmp_path / "run.yml").write_text(
        BATCH.replace("${data.question}", "${data.q}").replace("questions.jsonl", "q.jsonl")
    )
    refused = cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "run.yml")
    assert refused.returncode == 2
    assert "run.yml:4: column_mapping.message: the data has no column 'q'" in refused.stderr
    (tmp_path / "run.yml").write_text(
        "deployment: private\ndata: q.jsonl\ncolumn_mapping:\n  message: ${data.question}\n"
    )
    refused = cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "run.yml")
    assert refused.returncode == 2
    assert "run.yml:1: deployment: no deployment 'private' that you may use" in refused.stderr
    (tmp_path / "bad.jsonl").write_text('{"question": "ok"}\nnot json\n')
    (tmp_path / "run.yml").write_text(BATCH.replace("questions.jsonl", "bad.jsonl"))
    refused = cli(tmp_path, asgi_live_server, token, "run", "create", "-f", "run.yml")
    assert refused.returncode == 2 and "bad.jsonl:2:" in refused.stderr
    assert not Run.objects.exists()
    wrong = cli(tmp_path, asgi_live_server, "not-a-token", "run", "list")
    assert wrong.returncode == 2 and "Invalid token" in wrong.stderr

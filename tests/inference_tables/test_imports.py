"""Import of a Databricks request log into a deployment: a round trip export → import gives the
same rows; importing again adds nothing; broken rows are reported by line and the good ones
kept; a payload-table row (the trace inside the response) is read as the chat reads a reply."""

import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from agents.models import Conversation, RequestLog
from inference_tables import readers
from inference_tables.imports import import_request_log
from tests.feedback.conftest import chat_turn
from tests.support import SHARED_FIXTURES

pytestmark = pytest.mark.django_db


@pytest.fixture
def turns(demo_deployment, reviewer):
    first = chat_turn(demo_deployment, reviewer, top_k=3)
    follow_up = chat_turn(demo_deployment, reviewer, message="And how do I rate a document?")
    return [first, follow_up]


def exported(client, format_name: str) -> bytes:
    response = client.get(f"/api/v1/exports/requests/{format_name}/")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def jsonl_rows(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode().splitlines()]


def import_bytes(deployment, owner, body: bytes, name: str):
    _, rows = readers.rows_of(io.BytesIO(body), name)
    return import_request_log(deployment, rows, owner=owner)


@pytest.mark.parametrize("format_name", ["jsonl", "parquet"])
def test_an_exported_log_imported_again_gives_the_same_rows(
    api_client, admin_user, demo_deployment, turns, format_name
):
    api_client.force_authenticate(admin_user)
    before = exported(api_client, "jsonl")
    texts = {t.databricks_request_id: (t.request, t.response, t.created_at) for t in turns}
    file = exported(api_client, format_name)
    RequestLog.objects.all().delete()
    Conversation.objects.all().delete()

    report = import_bytes(demo_deployment, admin_user, file, f"requests.{format_name}")
    assert (report.added, report.already_logged, report.problems) == (2, 0, [])
    assert jsonl_rows(exported(api_client, "jsonl")) == jsonl_rows(before)
    for turn in RequestLog.objects.all():
        question, answer, created_at = texts[turn.databricks_request_id]
        assert (turn.request, turn.response) == (question, answer)
        assert abs((turn.created_at - created_at).total_seconds()) < 1, "logged, not imported, time"
        assert turn.trace_outline is not None and turn.user is None
    conversations = Conversation.objects.all()
    assert {c.user for c in conversations} == {admin_user}, "the importer owns them"
    assert sorted(c.turns.count() for c in conversations) == [1, 1]

    again = import_bytes(demo_deployment, admin_user, file, f"requests.{format_name}")
    assert (again.added, again.already_logged) == (0, 2)
    assert RequestLog.objects.count() == 2


def test_broken_rows_are_reported_by_line_and_the_good_ones_kept(demo_deployment, admin_user):
    response = json.loads((SHARED_FIXTURES / "traces" / "rag_simple.response.json").read_text())
    good = {
        "databricks_request_id": "req-0001",
        "timestamp_ms": 1_795_355_628_000,
        "status_code": 200,
        "execution_time_ms": 812,
        "request": json.dumps({"messages": [{"role": "user", "content": "What is tracing?"}]}),
        "response": json.dumps(response),
        "request_metadata": {"model": "main.agents.rag_bot", "version": "3"},
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "databricks_request_id": "has spaces in it"}),
        json.dumps({**good, "databricks_request_id": "req-0002", "timestamp_ms": "soon"}),
        "",
        json.dumps({**good, "databricks_request_id": "req-0003", "response": "<html>"}),
        json.dumps({**good, "databricks_request_id": "req-0004", "status_code": 503}),
        json.dumps(good),  # the same id again
        json.dumps(["a", "list"]),
    ]
    report = import_bytes(demo_deployment, admin_user, "\n".join(lines).encode(), "log.jsonl")
    assert [line for line, _ in report.problems] == [2, 3, 4, 6, 9]
    messages = dict(report.problems)
    assert messages[2].startswith("Not JSON")
    assert "databricks_request_id" in messages[3]
    assert "timestamp_ms" in messages[4]
    assert messages[6] == "response is not JSON."
    assert (report.added, report.already_logged) == (2, 1)

    turn = RequestLog.objects.get(databricks_request_id="req-0001")
    assert turn.request == "What is tracing?"
    assert turn.response == response["choices"][0]["message"]["content"]
    assert turn.trace == response["databricks_output"]["trace"], "read from the response"
    assert turn.created_at.timestamp() == 1_795_355_628
    assert turn.date.isoformat() == "2026-11-22"
    failed = RequestLog.objects.get(databricks_request_id="req-0004")
    assert failed.error == "The agent answered HTTP 503." and failed.response == ""


def test_admins_import_through_the_api(api_client, admin_user, reviewer, demo_deployment, turns):
    api_client.force_authenticate(admin_user)
    file = exported(api_client, "parquet")
    RequestLog.objects.all().delete()
    url = f"/api/v1/deployments/{demo_deployment.pk}/request-log/import/"
    upload = io.BytesIO(file)
    upload.name = "requests.parquet"
    response = api_client.post(url, {"file": upload}, format="multipart")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "added": 2, "already_logged": 0, "rejected": 0, "problems": [], "at_means": "row",
    }  # fmt: skip
    assert api_client.post(url, {}, format="multipart").status_code == 400
    broken = io.BytesIO(b"PAR1 but not really")
    broken.name = "x.parquet"
    report = api_client.post(url, {"file": broken}, format="multipart").json()
    assert report["rejected"] == 1 and report["problems"][0]["error"].startswith("Not a Parquet")
    api_client.force_authenticate(reviewer)
    assert api_client.post(url, {"file": io.BytesIO(file)}, format="multipart").status_code == 403
    assert pq.read_table(io.BytesIO(file)).num_rows == RequestLog.objects.count()


def test_import_logs_command(tmp_path, api_client, admin_user, demo_deployment, turns, capsys):
    api_client.force_authenticate(admin_user)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(exported(api_client, "jsonl") + b"{broken\n")
    RequestLog.objects.all().delete()
    args = ["import_logs", str(path), "--deployment", str(demo_deployment.pk)]
    call_command(*args, "--owner", admin_user.username)
    out = capsys.readouterr()
    assert "2 turns added, 0 logged already, 1 rows not used." in out.out
    assert "requests.jsonl line 3: Not JSON" in out.err
    with pytest.raises(CommandError, match="No deployment"):
        call_command("import_logs", str(path), "--deployment", "999", "--owner", "x")
    with pytest.raises(CommandError, match="No user"):
        call_command(*args, "--owner", "nobody")

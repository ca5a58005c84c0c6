"""Exports of the request log and the assessment log: read back with pyarrow and json, column
for column, they equal what was stored; filters select what the requests page lists; bad
input gets a clear 4xx."""

import csv
import io
import json
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents.models import RequestLog
from feedback import services
from inference_tables import exports
from tests.feedback.conftest import chat_turn, label_schemas, retriever_span_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def turns(demo_deployment, reviewer, stakeholder):
    """Two real answers of the demo agent and one that failed (the agent was not reachable)."""
    answered = [
        chat_turn(demo_deployment, reviewer, top_k=3),
        chat_turn(demo_deployment, stakeholder),
    ]
    return answered


def download(client, url, **params) -> bytes:
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content)


def stored_request_rows(turns) -> list[dict]:
    rows = []
    for turn in sorted(turns, key=lambda t: t.pk):
        turn = RequestLog.objects.get(pk=turn.pk)
        rows.append(
            {
                "databricks_request_id": turn.databricks_request_id,
                "client_request_id": turn.client_request_id,
                "date": turn.date.isoformat(),
                "timestamp_ms": turn.timestamp_ms,
                "status_code": turn.status_code,
                "execution_time_ms": turn.execution_time_ms,
                "conversation_id": str(turn.conversation_id),
                "request": turn.request_raw,
                "response": turn.response_raw,
                "trace": turn.trace,
                "request_metadata": turn.request_metadata,
                "schema_version": turn.schema_version,
            }
        )
    return rows


def parsed_trace(row: dict) -> dict:
    return {**row, "trace": json.loads(row["trace"]) if row["trace"] else None}


@pytest.mark.parametrize("format_name", ["jsonl", "csv", "parquet"])
def test_the_request_log_reads_back_as_stored(api_client, admin_user, turns, format_name):
    api_client.force_authenticate(admin_user)
    body = download(api_client, f"/api/v1/exports/requests/{format_name}/")
    if format_name == "jsonl":
        rows = [json.loads(line) for line in body.decode().splitlines()]
    elif format_name == "csv":
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        for row in rows:
            for name in ("timestamp_ms", "status_code", "execution_time_ms"):
                row[name] = int(row[name])
            row["request_metadata"] = json.loads(row["request_metadata"])
    else:
        table = pq.read_table(io.BytesIO(body))
        assert table.schema.field("date").type == "date32[day]"
        rows = table.to_pylist(maps_as_pydicts="strict")
        for row in rows:
            row["date"] = row["date"].isoformat()
    assert [parsed_trace(row) for row in rows] == stored_request_rows(turns)
    assert rows[0]["trace"], "the MLflow trace JSON as the agent returned it"


def test_the_requests_pages_filters_select_the_rows(client, admin_user, turns, demo_deployment):
    client.force_login(admin_user)
    one = turns[0]
    body = download(client, "/requests/export/jsonl/", conversation=one.conversation_id)
    assert [json.loads(line)["databricks_request_id"] for line in body.decode().splitlines()] == [
        one.databricks_request_id
    ]
    later = (timezone.localdate() + timedelta(days=1)).isoformat()
    assert download(client, "/requests/export/jsonl/", since=later) == b""
    parquet = download(client, "/requests/export/parquet/", since=later)
    assert pq.read_table(io.BytesIO(parquet)).num_rows == 0, "an empty file, still a valid one"


@pytest.mark.parametrize(
    ("url", "params", "status", "says"),
    [
        ("/api/v1/exports/requests/xlsx/", {}, 400, "Unknown format 'xlsx'"),
        (
            "/api/v1/exports/requests/csv/",
            {"since": "2026-12-02", "until": "2026-12-01"},
            400,
            "before",
        ),
        ("/api/v1/exports/requests/csv/", {"since": "yesterday"}, 400, "since"),
        ("/api/v1/exports/requests/csv/", {"deployment": "9999"}, 400, "deployment"),
        ("/api/v1/exports/assessments/csv/", {"status": "lost"}, 400, "status"),
    ],
)
def test_bad_exports_get_a_clear_4xx(api_client, admin_user, url, params, status, says):
    api_client.force_authenticate(admin_user)
    response = api_client.get(url, params)
    assert response.status_code == status
    assert says in response.content.decode()


def test_a_deployment_the_user_may_not_see_cannot_be_exported(
    api_client, stakeholder, admin_user, deployment_factory
):
    hidden = deployment_factory()
    hidden.allowed_users.add(admin_user)  # open to the admin only
    api_client.force_authenticate(stakeholder)
    response = api_client.get("/api/v1/exports/requests/jsonl/", {"deployment": hidden.pk})
    assert response.status_code == 400 and "deployment" in response.json()["errors"]
    assert api_client.get("/api/v1/exports/assessments/jsonl/").status_code == 403


def test_the_assessment_log_holds_every_version_as_its_rows(
    api_client, admin_user, reviewer, turns, demo_deployment
):
    label_schemas(
        demo_deployment,
        {"name": "answer_quality", "input_type": "numeric", "min_value": 1, "max_value": 5},
        {"name": "must_mention", "kind": "expectation", "input_type": "text_list"},
    )
    turn = turns[0]
    span_id = retriever_span_id(turn)
    first = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_quality": {"value": 4, "rationale": "Close"}}}],
    )
    second = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[
            {
                "ratings": {"answer_quality": {"value": 2}},
                "expectations": {"must_mention": {"value": ["MLflow traces spans"]}},
                "free_text_comment": "Misses the point",
                "suggested_output": "Tracing records each step.",
            }
        ],
        retrieval_assessments=[
            {
                "position": 1,
                "step_id": span_id,
                "ratings": {"chunk_relevance": {"value": "negative"}},
            }
        ],
    )
    api_client.force_authenticate(admin_user)
    table = pq.read_table(io.BytesIO(download(api_client, "/api/v1/exports/assessments/parquet/")))
    rows = table.to_pylist(maps_as_pydicts="strict")
    jsonl = download(api_client, "/api/v1/exports/assessments/jsonl/").decode().splitlines()
    assert len(rows) == len(jsonl) == 3  # the first version's text; the second's text and document
    source = {"type": "human", "id": reviewer.email, "tags": {}}
    assert rows[0] == {
        "request_id": turn.databricks_request_id,
        "step_id": None,
        "source": source,
        "timestamp": first.created_at,
        "text_assessment": {
            "step_id": None,
            "ratings": {
                "answer_quality": {"value": "4", "double_value": 4.0, "rationale": "Close"}
            },
            "free_text_comment": None,
            "suggested_output": None,
        },
        "retrieval_assessment": None,
    }
    text = rows[1]["text_assessment"]
    assert text["ratings"]["must_mention"]["value"] == '["MLflow traces spans"]'
    assert text["free_text_comment"] == "Misses the point"
    assert text["suggested_output"] == "Tracing records each step."
    assert rows[1]["timestamp"] == rows[2]["timestamp"] == second.created_at
    assert rows[2]["step_id"] == span_id
    assert rows[2]["retrieval_assessment"] == {
        "position": 1,
        "step_id": span_id,
        "ratings": {
            "chunk_relevance": {"value": "negative", "double_value": None, "rationale": None}
        },
        "free_text_comment": None,
    }
    assert json.loads(jsonl[2])["retrieval_assessment"]["position"] == 1
    assert json.loads(jsonl[0])["timestamp"] == first.created_at.isoformat().replace("+00:00", "Z")


def test_an_export_is_read_and_sent_batch_by_batch(api_client, admin_user, turns, monkeypatch):
    monkeypatch.setattr(exports, "BATCH_ROWS", 1)
    api_client.force_authenticate(admin_user)
    response = api_client.get("/api/v1/exports/requests/jsonl/")
    chunks = list(response.streaming_content)
    assert len(chunks) == len(turns)  # one batch of one row at a time
    assert response["Content-Disposition"].startswith('attachment; filename="requests-')
    parquet = b"".join(api_client.get("/api/v1/exports/requests/parquet/").streaming_content)
    assert pq.ParquetFile(io.BytesIO(parquet)).num_row_groups == len(turns)


def test_export_logs_writes_the_file(turns, tmp_path, capsys):
    out = tmp_path / "requests.parquet"
    call_command("export_logs", "--kind", "requests", "--format", "parquet", "--out", str(out))
    table = pq.read_table(out)
    assert table.column("databricks_request_id").to_pylist() == [
        t.databricks_request_id for t in sorted(turns, key=lambda t: t.pk)
    ]
    assert f"{len(turns)}/{len(turns)} turns" in capsys.readouterr().err
    with pytest.raises(CommandError, match="not a day"):
        call_command("export_logs", "--kind", "requests", "--since", "soon", "--out", str(out))
    with pytest.raises(CommandError, match="before"):
        call_command(
            "export_logs", "--kind", "assessments", "--since", "2026-12-02",
            "--until", "2026-12-01", "--out", str(out),
        )  # fmt: skip


@pytest.mark.integration
def test_under_uvicorn_the_export_streams_as_it_is_read(
    asgi_live_server, admin_user, turns, monkeypatch
):
    import httpx
    from rest_framework.authtoken.models import Token

    monkeypatch.setattr(exports, "BATCH_ROWS", 1)
    token = Token.objects.create(user=admin_user).key
    with httpx.stream(
        "GET",
        f"{asgi_live_server.url}/api/v1/exports/requests/jsonl/",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["databricks_request_id"] for line in lines] == [
        t.databricks_request_id for t in sorted(turns, key=lambda t: t.pk)
    ]


def test_the_requests_page_links_its_filters_export(client, admin_user, turns):
    client.force_login(admin_user)
    page = client.get("/requests/", {"status": "answered"}).content.decode()
    for format_name in ("jsonl", "csv", "parquet"):
        assert f'href="/requests/export/{format_name}/?status=answered"' in page


def test_a_review_session_exports_its_turns_and_their_ratings(
    client, admin_user, reviewer, deployment_factory
):
    from feedback import services as feedback_services
    from tests.review.sessions_support import make_session
    from tests.support.turns import logged_turn

    bot = deployment_factory(display_name="Bot")
    session, in_session = make_session(admin_user, bot, [reviewer], turns=2)
    outside = logged_turn(bot, admin_user, request="Not in the session")
    for turn in (in_session[0], outside):
        feedback_services.rating_create(
            turn=turn,
            reviewer=reviewer,
            text_assessments=[{"ratings": {"answer_correct": {"value": "positive"}}}],
        )
    client.force_login(admin_user)
    page = client.get(f"/review/sessions/{session.pk}/").content.decode()
    assert f'href="/requests/export/parquet/?session={session.pk}"' in page
    assert f'href="/assessments/export/csv/?session={session.pk}"' in page
    turns = download(client, "/requests/export/jsonl/", session=session.pk).decode().splitlines()
    assert sorted(json.loads(line)["databricks_request_id"] for line in turns) == sorted(
        t.databricks_request_id for t in in_session
    )
    ratings = download(client, "/assessments/export/jsonl/", session=session.pk)
    assert [json.loads(line)["request_id"] for line in ratings.decode().splitlines()] == [
        in_session[0].databricks_request_id
    ]

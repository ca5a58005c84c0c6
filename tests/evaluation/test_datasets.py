"""Datasets: an upload (JSON lines or CSV) becomes the name's next version with its rows as
given; a bad row is reported by line and nothing is saved unless bad rows are skipped; older
versions never change."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from evaluation.models import Dataset, DatasetRow

pytestmark = pytest.mark.django_db
ROWS = [
    {"question": "What is MLflow tracing?", "expected_response": "It records each step."},
    {"question": "How do I rate a document?", "expected_facts": ["thumbs", "per document"]},
    {"question": "Who sees my ratings?", "guidelines": ["Be polite"], "topic": "access"},
]


def upload(client, name: str, body: bytes, file_name: str, **data):
    file = io.BytesIO(body)
    file.name = file_name
    return client.post(
        f"/api/v1/datasets/{name}/versions/", {"file": file, **data}, format="multipart"
    )


def jsonl(rows) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def test_uploads_are_versions_with_their_rows(api_client, admin_user, reviewer):
    api_client.force_authenticate(admin_user)
    first = upload(api_client, "faq", jsonl(ROWS), "faq.jsonl")
    assert first.status_code == 201, first.json()
    assert first.json() | {"created_at": None} == {
        "name": "faq", "version": 1, "rows": 3, "file_name": "faq.jsonl", "skipped": [],
        "columns": ["question", "expected_response", "expected_facts", "guidelines", "topic"],
        "created_at": None,
    }  # fmt: skip
    csv_body = (
        b'question,expected_facts\r\n"What is a span?","[""a step"", ""timed""]"\r\n'
        b'"What is a trace?","spans\ntimes"\r\n'
    )
    second = upload(api_client, "faq", csv_body, "faq.csv")
    assert second.status_code == 201 and second.json()["version"] == 2
    api_client.force_authenticate(reviewer)
    one = api_client.get("/api/v1/datasets/faq/versions/1/").json()
    assert one["results"] == ROWS and one["dataset"]["version"] == 1
    two = api_client.get("/api/v1/datasets/faq/versions/2/").json()["results"]
    assert two == [
        {"question": "What is a span?", "expected_facts": ["a step", "timed"]},
        {"question": "What is a trace?", "expected_facts": ["spans", "times"]},
    ]
    listed = api_client.get("/api/v1/datasets/").json()
    assert [(d["name"], [v["version"] for v in d["versions"]]) for d in listed] == [("faq", [2, 1])]


def test_bad_rows_are_reported_by_line_and_nothing_is_saved(api_client, admin_user):
    api_client.force_authenticate(admin_user)
    body = b"\n".join(
        [
            json.dumps(ROWS[0]).encode(),
            b"{not json",
            json.dumps({"expected_response": "only an expectation"}).encode(),
            b"",
            json.dumps({"question": "q", "expected_facts": "not a list"}).encode(),
            json.dumps(["a", "list"]).encode(),
            json.dumps(ROWS[1]).encode(),
        ]
    )
    refused = upload(api_client, "faq", body, "faq.jsonl")
    assert refused.status_code == 400
    problems = refused.json()["problems"]
    assert [p["line"] for p in problems] == [2, 3, 5, 6]
    assert problems[0]["error"].startswith("Not JSON")
    assert "needs an input column" in problems[1]["error"]
    assert "expected_facts must be a list" in problems[2]["error"]
    assert not Dataset.objects.exists() and not DatasetRow.objects.exists()

    kept = upload(api_client, "faq", body, "faq.jsonl", skip_bad_rows="true")
    assert kept.status_code == 201
    assert kept.json()["rows"] == 2 and [s["line"] for s in kept.json()["skipped"]] == [2, 3, 5, 6]


@pytest.mark.parametrize(
    ("name", "body", "file_name", "status"),
    [
        ("has@sign", b'{"q": "x"}', "a.jsonl", 400),
        ("faq", b"", "a.jsonl", 400),
        ("faq", b"\xff\xfe", "a.jsonl", 400),
        ("faq", b"question\r\nx,y\r\n", "a.csv", 400),
    ],
)
def test_bad_uploads_are_refused(api_client, admin_user, name, body, file_name, status):
    api_client.force_authenticate(admin_user)
    response = upload(api_client, name, body, file_name)
    assert response.status_code == status, response.content
    assert not DatasetRow.objects.exists()


def test_who_may_do_what(api_client, reviewer, stakeholder, admin_user):
    api_client.force_authenticate(reviewer)
    assert api_client.get("/api/v1/datasets/faq/versions/1/").status_code == 404
    # Reviewers run evaluations from CI: they upload their datasets.
    assert upload(api_client, "faq", jsonl(ROWS), "faq.jsonl").status_code == 201
    api_client.force_authenticate(stakeholder)
    assert api_client.get("/api/v1/datasets/").status_code == 403
    assert upload(api_client, "faq", jsonl(ROWS), "faq.jsonl").status_code == 403


def test_the_command_uploads_and_reports(tmp_path, capsys):
    path = tmp_path / "faq.jsonl"
    path.write_bytes(jsonl(ROWS) + b"\n{broken")
    with pytest.raises(CommandError, match="nothing was saved"):
        call_command("dataset_upload", "faq", str(path))
    assert "faq.jsonl line 4: Not JSON" in capsys.readouterr().err
    call_command("dataset_upload", "faq", str(path), "--skip-bad-rows")
    assert "faq@1 saved: 3 rows" in capsys.readouterr().out


def test_the_datasets_page_uploads_lists_and_shows_rows(client, reviewer, stakeholder):
    client.force_login(reviewer)
    bad = io.BytesIO(jsonl(ROWS) + b"\n{broken")
    bad.name = "faq.jsonl"
    refused = client.post("/datasets/", {"name": "faq", "file": bad})
    assert refused.status_code == 400 and "line 4: " in refused.content.decode()
    assert not Dataset.objects.exists()
    bad.seek(0)
    saved = client.post("/datasets/", {"name": "faq", "file": bad, "skip_bad_rows": "on"},
                        follow=True)  # fmt: skip
    assert "Saved faq@1 (3 rows; 1 bad row(s) skipped)." in saved.content.decode()
    assert 'href="/datasets/faq/1/"' in saved.content.decode()
    evil = io.BytesIO(json.dumps({"question": "<img src=x onerror=alert(1)>"}).encode())
    evil.name = "evil.jsonl"
    client.post("/datasets/", {"name": "evil", "file": evil})
    shown = client.get("/datasets/evil/1/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown and "<img src=x" not in shown
    rows = client.get("/datasets/faq/1/").content.decode()
    assert ROWS[0]["question"] in rows and "expected_facts" in rows
    client.force_login(stakeholder)
    assert client.get("/datasets/").status_code == 403

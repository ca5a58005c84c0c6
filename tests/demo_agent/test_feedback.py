"""The feedback model of the demo agent: records are logged, listed, and can be made to fail."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.demo_agent.helpers import post_feedback


def nested_record(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "source": {"id": "rita@example.com", "type": "human"},
        "text_assessments": [
            {
                "ratings": {"answer_correct": {"value": "positive"}},
                "free_text_comment": "Grounded in the docs.",
                "suggested_output": "A better answer.",
            }
        ],
        "retrieval_assessments": [{"position": 0, "ratings": {"relevance": {"value": "negative"}}}],
    }


def string_record(request_id: str) -> dict:
    # What the official chatbot template sends: the JSON columns as JSON-encoded strings.
    return {
        "request_id": request_id,
        "source": json.dumps({"id": "e2e-chatbot-app", "type": "human"}),
        "text_assessments": json.dumps([{"ratings": {"answer_correct": {"value": "negative"}}}]),
        "retrieval_assessments": json.dumps([]),
    }


def test_feedback_is_logged_in_order_and_listed_per_endpoint(demo_agent):
    first = post_feedback(demo_agent, [nested_record("req-1")], idempotency_key="key-1")
    assert first.status_code == 200
    assert first.json() == {"predictions": {"result": "ok"}}
    second = post_feedback(demo_agent, [string_record("req-2"), string_record("req-3")])
    assert second.status_code == 200
    post_feedback(demo_agent, [nested_record("other")], endpoint="another-endpoint")

    records = demo_agent.records("demo-endpoint")
    assert [r["record"] for r in records] == [
        nested_record("req-1"),
        string_record("req-2"),
        string_record("req-3"),
    ]
    assert [r["idempotency_key"] for r in records] == ["key-1", None, None]
    assert {r["endpoint"] for r in records} == {"demo-endpoint"}
    assert all(r["received_at"].startswith("20") for r in records)
    assert [r["record"]["request_id"] for r in demo_agent.records("another-endpoint")] == ["other"]

    lines = demo_agent.feedback_log.read_text().splitlines()
    assert [json.loads(line) for line in lines][:3] == records


def test_concurrent_feedback_posts_are_all_logged_whole(demo_agent):
    def send(i: int) -> int:
        record = nested_record(f"req-{i}")
        record["text_assessments"][0]["free_text_comment"] = "x" * 5000 + str(i)  # long lines
        return post_feedback(demo_agent, [record], idempotency_key=f"key-{i}").status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(send, range(20)))
    assert statuses == [200] * 20

    records = demo_agent.records()
    assert sorted(r["record"]["request_id"] for r in records) == sorted(
        f"req-{i}" for i in range(20)
    )
    for r in records:
        i = r["record"]["request_id"].removeprefix("req-")
        assert r["idempotency_key"] == f"key-{i}"
        assert r["record"]["text_assessments"][0]["free_text_comment"].endswith("x" + i)
    lines = demo_agent.feedback_log.read_text().splitlines()
    assert len(lines) == 20
    assert all(json.loads(line)["endpoint"] == "demo-endpoint" for line in lines)


def test_a_feedback_sink_that_is_down_answers_503_and_logs_nothing(demo_agent):
    demo_agent.configure(feedback_error_rate=1.0)
    for _ in range(3):
        response = post_feedback(demo_agent, [nested_record("lost")])
        assert response.status_code == 503
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert response.headers["retry-after"]
    assert demo_agent.records() == []

    demo_agent.configure(feedback_error_rate=0.0)  # the sink is back up
    assert post_feedback(demo_agent, [nested_record("kept")]).status_code == 200
    assert [r["record"]["request_id"] for r in demo_agent.records()] == ["kept"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"dataframe_records": []},
        {"dataframe_records": {"request_id": "r"}},
        {"dataframe_records": ["r"]},
        {"dataframe_records": [{"source": {"id": "a", "type": "human"}}]},
        {"dataframe_records": [{"request_id": ""}]},
        {"dataframe_records": [{"request_id": 7}]},
        {"dataframe_records": [{"request_id": "r", "source": "{not json"}]},
        {"dataframe_records": [{"request_id": "r", "source": ["a"]}]},
        {"dataframe_records": [{"request_id": "r", "text_assessments": {"ratings": {}}}]},
        {"dataframe_records": [{"request_id": "r", "retrieval_assessments": '{"a": 1}'}]},
        # One bad record refuses the whole post: nothing half-logged.
        {"dataframe_records": [{"request_id": "ok"}, {"text": "no id"}]},
    ],
)
def test_bad_feedback_is_refused_and_not_logged(demo_agent, body):
    response = httpx.post(demo_agent.feedback_url(), json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert demo_agent.records() == []


def test_feedback_that_is_not_json_is_refused(demo_agent):
    response = httpx.post(demo_agent.feedback_url(), content=b"request_id=r", timeout=30)
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"


def test_the_feedback_log_can_be_cleared(demo_agent):
    post_feedback(demo_agent, [nested_record("r")])
    assert len(demo_agent.records()) == 1
    demo_agent.clear_feedback()
    assert demo_agent.records() == []
    assert demo_agent.feedback_log.read_text() == ""


@pytest.mark.parametrize("route", ["feedback", "invocations"])
def test_a_caller_that_hangs_up_mid_body_logs_nothing_and_no_traceback(demo_agent, route):
    """A sink post or a chat turn cut by its timeout or a killed worker (a batch run's) is not
    the agent's error."""
    import socket
    import time
    from urllib.parse import urlsplit

    wanted = demo_agent.feedback_url if route == "feedback" else demo_agent.invocations_url
    url = urlsplit(wanted("hang-up"))
    auth = "".join(f"{k}: {v}\r\n" for k, v in demo_agent.auth_headers().items())
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n{auth}"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            '{"dataframe_records": ['.encode()
        )
        time.sleep(0.3)  # the agent is now waiting for the rest of the body
    time.sleep(0.5)
    assert demo_agent.records("hang-up") == []
    assert f"hung up before its body arrived ({url.path})" in demo_agent.stderr()
    assert "Traceback" not in demo_agent.stderr()

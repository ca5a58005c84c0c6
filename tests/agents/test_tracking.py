"""Reading traces from a real `mlflow server` (agents/tracking.py), and what the trace views,
the request API and the MLflow sink make of it for a turn that has only an MLflow trace id.

The traces are real (`mlflow_server.make_trace()`: AGENT > RETRIEVER with 3 documents,
CHAT_MODEL). To see a trace that is missing, half written or refused for a while, the tests
put `DelayingProxy` between the app and the real server: a fake at the outgoing-HTTP seam that
passes every request on unless its script says otherwise.
"""

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agents import tracking
from agents.models import RequestLog
from agents.trace_outline import outline_of
from agents.traces import normalize_trace
from feedback import delivery as delivery_service
from feedback import services
from feedback.models import Delivery, DeliveryStatus
from feedback.sinks import trace_id_of
from tests.support.servers import free_port
from tests.support.turns import logged_turn

pytestmark = pytest.mark.integration

UNKNOWN_ID = "tr-" + "0" * 32
NOT_FOUND_BODY = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Trace not found."}


@pytest.fixture(autouse=True)
def quiet_mlflow_client(monkeypatch):
    """The MlflowClient this process uses to read assessments back sends no telemetry."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")


@pytest.fixture(scope="module")
def made_trace(mlflow_server) -> dict:
    return mlflow_server.make_trace()


# --- A proxy in front of the real server --------------------------------------------------------

Answer = tuple[int, bytes]
Rewrite = Callable[[str, Answer], Answer]


class DelayingProxy:
    """Forwards GETs to `target`; the n-th request's answer goes through `script[n]` first."""

    def __init__(self, target: str):
        self.target = target
        self.script: list[Rewrite] = []
        self.paths: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                real = httpx.get(proxy.target + self.path, timeout=30)
                answer: Answer = (real.status_code, real.content)
                n = len(proxy.paths)
                proxy.paths.append(self.path)
                if n < len(proxy.script):
                    answer = proxy.script[n](self.path, answer)
                self.send_response(answer[0])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def proxy(mlflow_server):
    proxy = DelayingProxy(mlflow_server.url)
    yield proxy
    proxy.server.shutdown()
    proxy.server.server_close()


def not_found(path: str, answer: Answer) -> Answer:
    return 404, json.dumps(NOT_FOUND_BODY).encode()


def without_last_span(path: str, answer: Answer) -> Answer:
    data = json.loads(answer[1])
    return answer[0], json.dumps({**data, "spans": data["spans"][:-1]}).encode()


def bare_info(path: str, answer: Answer) -> Answer:
    # What the server holds between the spans' arrival and the trace's own info.
    info = json.loads(answer[1])["trace"]["trace_info"]
    bare = {k: info[k] for k in ("trace_id", "trace_location", "request_time", "state")}
    return answer[0], json.dumps({"trace": {"trace_info": bare}}).encode()


def server_error(path: str, answer: Answer) -> Answer:
    return 500, b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'


# --- fetch_trace --------------------------------------------------------------------------------


def test_a_fetched_trace_is_what_mlflow_itself_reads(mlflow_server, made_trace):
    fetched = tracking.fetch_trace(mlflow_server.url, made_trace["info"]["trace_id"])

    # `made_trace` is `MlflowClient.get_trace(...).to_dict()` of the same trace.
    assert fetched == made_trace
    trace = normalize_trace(fetched)
    assert trace.problems == []
    assert (trace.trace_id, trace.status, trace.span_count) == (
        made_trace["info"]["trace_id"],
        "OK",
        3,
    )
    [root] = trace.roots
    assert (root.name, root.span_type) == ("rag_agent", "AGENT")
    retriever, llm = root.children
    assert (retriever.span_type, llm.span_type) == ("RETRIEVER", "CHAT_MODEL")
    assert [d.chunk_id for d in retriever.documents] == ["0", "1", "2"]


def test_a_trace_that_appears_while_waiting_is_returned(proxy, made_trace):
    proxy.script = [not_found, not_found]

    fetched = tracking.fetch_trace(proxy.url, made_trace["info"]["trace_id"], wait_s=5)

    assert fetched == made_trace
    info_path = f"/api/3.0/mlflow/traces/{made_trace['info']['trace_id']}"
    assert proxy.paths[:3] == [info_path] * 3
    assert proxy.paths[3].startswith("/ajax-api/3.0/mlflow/get-trace-artifact?request_id=tr-")


def test_an_unknown_trace_is_not_found_after_a_short_bounded_wait(mlflow_server):
    started = time.monotonic()
    with pytest.raises(tracking.TraceNotFound) as raised:
        tracking.fetch_trace(mlflow_server.url, UNKNOWN_ID, wait_s=0.3)
    took = time.monotonic() - started

    assert 0.3 <= took < 3
    assert (
        str(raised.value)
        == f"the tracking server at {mlflow_server.url} has no trace {UNKNOWN_ID}."
    )
    assert tracking.unavailable_message(raised.value).startswith(
        "The trace is not available from the tracking server yet: the tracking server at"
    )


def test_spans_still_arriving_are_not_ready(proxy, made_trace):
    # Each attempt asks for the info, then the spans: every spans answer lacks one.
    proxy.script = [lambda p, a: a, without_last_span] * 50

    with pytest.raises(tracking.TraceNotReady, match="has 2 of the 3 spans"):
        tracking.fetch_trace(proxy.url, made_trace["info"]["trace_id"], wait_s=0.2)


def test_an_info_not_yet_written_by_the_agent_is_not_ready(proxy, made_trace):
    proxy.script = [bare_info] * 50

    with pytest.raises(tracking.TraceNotReady, match="still being written"):
        tracking.fetch_trace(proxy.url, made_trace["info"]["trace_id"], wait_s=0.2)
    assert all(p.startswith("/api/3.0/mlflow/traces/") for p in proxy.paths)


def test_a_server_error_is_reported_at_once_with_its_excerpt(proxy, made_trace):
    proxy.script = [server_error]
    started = time.monotonic()

    with pytest.raises(tracking.TrackingServerError) as raised:
        tracking.fetch_trace(proxy.url, made_trace["info"]["trace_id"], wait_s=5)

    assert time.monotonic() - started < 2
    assert str(raised.value) == (
        f"{proxy.url} answered HTTP 500: "
        '{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'
    )


def test_an_unreachable_server_is_reported_at_once():
    nobody = f"http://user:secret@127.0.0.1:{free_port()}/mlflow"
    started = time.monotonic()

    with pytest.raises(tracking.TrackingServerError) as raised:
        tracking.fetch_trace(nobody, UNKNOWN_ID, wait_s=5)

    assert time.monotonic() - started < 2
    message = str(raised.value)
    assert message.startswith("could not reach the tracking server at http://127.0.0.1:")
    assert "secret" not in message and "/mlflow" not in message


def test_a_trace_larger_than_the_limit_is_refused(settings, mlflow_server, made_trace):
    settings.AGENT_MAX_REPLY_BYTES = 1000

    with pytest.raises(tracking.TrackingServerError, match="larger than 1,000 bytes"):
        tracking.fetch_trace(mlflow_server.url, made_trace["info"]["trace_id"])


@pytest.mark.parametrize("bad_id", ["../../api/2.0/mlflow/experiments/list", "tr-1 2", "", 7])
def test_an_id_that_is_no_trace_id_is_refused_without_asking(bad_id):
    with pytest.raises(tracking.TrackingServerError, match="is not an MLflow trace id"):
        tracking.fetch_trace(f"http://127.0.0.1:{free_port()}", bad_id)


# --- trace_for_turn and what shows it ------------------------------------------------------------


@pytest.fixture
def server_deployment(deployment_factory, mlflow_server):
    return deployment_factory(
        endpoint_kind="mlflow_agent_server",
        agent_schema="responses",
        query_endpoint="http://127.0.0.1:9/responses",
        mlflow_tracking_uri=mlflow_server.url,
        feedback_sink="mlflow_assessments",
    )


def agent_server_turn(deployment, user, trace_id: str) -> RequestLog:
    """A turn as an AgentServer answer leaves it: a trace id, no trace."""
    return logged_turn(deployment, user, mlflow_trace_id=trace_id)


def test_a_turn_fetches_its_trace_once_and_keeps_it(server_deployment, reviewer, made_trace, proxy):
    server_deployment.mlflow_tracking_uri = proxy.url
    server_deployment.save()
    turn = agent_server_turn(server_deployment, reviewer, made_trace["info"]["trace_id"])

    assert tracking.trace_for_turn(turn) == made_trace
    turn.refresh_from_db()
    assert turn.trace == made_trace
    assert turn.trace_outline == outline_of(made_trace)  # the tree opens from it
    asked = len(proxy.paths)
    assert tracking.trace_for_turn(turn) == made_trace
    assert len(proxy.paths) == asked == 2


def test_a_failed_fetch_keeps_nothing_so_the_next_one_tries_again(
    server_deployment, reviewer, made_trace, proxy
):
    server_deployment.mlflow_tracking_uri = proxy.url
    server_deployment.save()
    turn = agent_server_turn(server_deployment, reviewer, made_trace["info"]["trace_id"])
    proxy.script = [server_error]

    with pytest.raises(tracking.TrackingServerError):
        tracking.trace_for_turn(turn)
    turn.refresh_from_db()
    assert turn.trace is None
    assert tracking.trace_for_turn(turn) == made_trace


def test_a_turn_without_a_trace_id_or_tracking_server_has_no_trace(
    deployment_factory, server_deployment, reviewer
):
    assert tracking.trace_for_turn(agent_server_turn(server_deployment, reviewer, "")) is None
    databricks = deployment_factory()
    assert tracking.trace_for_turn(agent_server_turn(databricks, reviewer, UNKNOWN_ID)) is None


def test_the_trace_panel_shows_the_tree_from_the_tracking_server(
    client, server_deployment, reviewer, made_trace
):
    turn = agent_server_turn(server_deployment, reviewer, made_trace["info"]["trace_id"])
    client.force_login(reviewer)

    response = client.get(f"/requests/{turn.databricks_request_id}/trace/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "rag_agent" in html and "3 spans" in html
    assert made_trace["info"]["trace_id"] in html
    turn.refresh_from_db()
    assert turn.trace == made_trace
    assert [row[3] for row in turn.trace_outline["spans"]] == [
        "rag_agent",
        "vector_search",
        "chat_model",
    ]


def test_the_trace_panel_says_why_a_trace_is_missing_and_offers_to_try_again(
    client, server_deployment, reviewer
):
    turn = agent_server_turn(server_deployment, reviewer, UNKNOWN_ID)
    client.force_login(reviewer)
    url = f"/requests/{turn.databricks_request_id}/trace/"

    response = client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    assert "The trace is not available from the tracking server yet: the tracking server" in html
    assert f'hx-get="{url}"' in html and "Try again" in html
    # The span routes say the same, without a button that would replace the whole panel.
    span = client.get(f"/requests/{turn.databricks_request_id}/spans/abcdef0123456789/")
    assert span.status_code == 200 and "not available from the tracking server" in span.text
    assert "Try again" not in span.text


def test_the_request_api_returns_the_fetched_trace_normalized(
    api_client, server_deployment, reviewer, made_trace
):
    turn = agent_server_turn(server_deployment, reviewer, made_trace["info"]["trace_id"])
    api_client.force_login(reviewer)

    body = api_client.get(f"/api/v1/requests/{turn.databricks_request_id}/").json()

    [root] = body["trace"]["roots"]
    assert root["span_type"] == "AGENT"
    assert [c["span_type"] for c in root["children"]] == ["RETRIEVER", "CHAT_MODEL"]
    raw = api_client.get(f"/api/v1/requests/{turn.databricks_request_id}/?trace=raw").json()
    assert raw["trace"] == made_trace


def test_the_request_api_of_a_missing_trace_answers_without_it(
    api_client, server_deployment, reviewer
):
    turn = agent_server_turn(server_deployment, reviewer, UNKNOWN_ID)
    api_client.force_login(reviewer)

    response = api_client.get(f"/api/v1/requests/{turn.databricks_request_id}/")

    assert response.status_code == 200
    assert response.json()["trace"] is None


# --- The MLflow sink ---------------------------------------------------------------------------


def test_a_rating_of_a_turn_with_only_a_trace_id_reaches_the_mlflow_sink(
    server_deployment, reviewer, mlflow_server
):
    # A trace of its own: the assessments change the info that other tests compare.
    trace_id = mlflow_server.make_trace()["info"]["trace_id"]
    turn = agent_server_turn(server_deployment, reviewer, trace_id)
    assert trace_id_of(turn.pk) == trace_id

    rating = services.rating_create(
        turn=turn,
        reviewer=reviewer,
        text_assessments=[{"ratings": {"answer_correct": {"value": "positive"}}}],
    )
    delivery = Delivery.objects.get(rating=rating)
    delivery_service.delivery_run(delivery.pk)
    delivery.refresh_from_db()

    assert (delivery.status, delivery.last_error) == (DeliveryStatus.SENT, "")
    names = [a.name for a in mlflow_server.trace(trace_id).info.assessments]
    assert "answer_correct" in names


def test_the_trace_json_id_comes_before_the_returned_one(server_deployment, reviewer, made_trace):
    turn = agent_server_turn(server_deployment, reviewer, "tr-returned")
    RequestLog.objects.filter(pk=turn.pk).update(trace=made_trace)

    assert trace_id_of(turn.pk) == made_trace["info"]["trace_id"]

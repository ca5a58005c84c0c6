"""Real traces in a fresh experiment of the test MLflow server, logged by the MLflow library in a
child process (as tests/support/mlflow_server.py does, so this process's MLflow globals stay
untouched): `log_traces(url, experiment, turns)` → {"experiment_id", "trace_ids"}.

Each turn is an agent answering one question in chat-completions form, with a `topic` tag to
filter on; `error=True` makes the agent's root span fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.support import REPO_ROOT
from tests.support.mlflow_server import CHILD_TIMEOUT_S, QUIET_ENV, _clean_env


def log_traces(tracking_uri: str, experiment: str, turns: list[dict]) -> dict:
    """turns: [{"question", "answer", "topic", "error"?}], logged in this order."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.review.mlflow_support", tracking_uri, experiment],
        input=json.dumps(turns),
        cwd=REPO_ROOT,
        env=_clean_env({**QUIET_ENV, "MLFLOW_TRACKING_URI": tracking_uri}),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Logging MLflow traces failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class AgentFailed(RuntimeError):
    pass


def _child(tracking_uri: str, experiment: str, turns: list[dict]) -> dict:
    import mlflow
    from mlflow.entities import SpanType

    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    trace_ids = []
    for turn in turns:
        messages = [{"role": "user", "content": turn["question"]}]
        try:
            with mlflow.start_span(name="support_agent", span_type=SpanType.AGENT) as root:
                root.set_inputs({"messages": messages})
                mlflow.update_current_trace(tags={"topic": turn["topic"]})
                trace_ids.append(root.trace_id)
                if turn.get("error"):
                    raise AgentFailed("the knowledge base is down")
                answer = {"role": "assistant", "content": turn["answer"]}
                root.set_outputs(
                    {"object": "chat.completion", "choices": [{"index": 0, "message": answer}]}
                )
        except AgentFailed:
            pass
        time.sleep(0.01)  # distinct start times: the search orders by them, to the millisecond
    mlflow.flush_trace_async_logging()
    deadline = time.monotonic() + 30
    for trace_id in trace_ids:  # spans arrive after the trace's info: wait for all of them
        while not _has_spans(mlflow, trace_id):
            if time.monotonic() > deadline:
                raise RuntimeError(f"The server did not return trace {trace_id} with its span.")
            time.sleep(0.2)
    return {"experiment_id": experiment_id, "trace_ids": trace_ids}


def _has_spans(mlflow, trace_id: str) -> bool:
    try:
        trace = mlflow.get_trace(trace_id)
    except Exception:  # not there yet: MLflow raises its own error types
        return False
    return bool(trace and trace.data.spans)


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], sys.argv[2], json.loads(sys.stdin.read()))))

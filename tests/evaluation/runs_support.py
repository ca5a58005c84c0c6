"""What the run tests share: a dataset from the demo agent's own corpus, deployments of the
demo agent (one playing a judge), and waiting for a run to end."""

import io
import json
import time

from agents.models import Deployment
from evaluation import datasets
from evaluation.models import Run, RunStatus

QUESTIONS = [
    ("What is MLflow tracing?", ["trace"]),
    ("How does model serving scale?", ["serving"]),
    ("How do reviewers rate documents?", ["document"]),
    ("What does agent evaluation measure?", ["evaluation"]),
    ("Where does feedback go?", ["feedback"]),
    ("What is a span?", ["span"]),
]


TRACING_DOC = "https://mlflow.org/docs/latest/genai/tracing/"  # in the demo agent's corpus


def upload_questions(name: str = "faq", rows: list[dict] | None = None, user=None):
    if rows is None:
        rows = [
            {
                "question": q,
                "expected_facts": facts,
                "expected_response": facts[0],
                "expected_retrieved_context": [TRACING_DOC],
            }
            for q, facts in QUESTIONS
        ]
    body = "\n".join(json.dumps(row) for row in rows).encode()
    return datasets.dataset_upload(
        name=name, file=io.BytesIO(body), file_name=f"{name}.jsonl", user=user
    ).version


def demo_agent_deployment(demo_agent, *, name: str, judge: bool = False) -> Deployment:
    deployment = Deployment(
        model_name=f"main.demo.{name.replace('-', '_')}",
        model_version="1",
        display_name=name,
        query_endpoint=f"{demo_agent.url}/serving-endpoints/agents_main-demo-{name}/invocations",
        agent_schema="chat_completions",
        feedback_sink="none",
        default_custom_inputs={"style": "judge"} if judge else {},
    )
    deployment.full_clean()
    deployment.save()
    return deployment


def wait_for_end(name: str, timeout_s: float = 60) -> Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = Run.objects.get(name=name)
        if run.status != RunStatus.RUNNING:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {name} did not end within {timeout_s} s")

"""Set-up: the database, reviewers and their tokens, the deployment, real turns; the rating
body; and emptying the rating tables between phases. Imports Django models: import it after
harness.config.configure()."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.core.management import call_command
from django.db import connection
from harness import config
from harness.processes import DemoAgent
from harness.reviewers import Reviewer, reviewers_ensure

from agents import services as agent_services
from agents.conversations import conversation_create
from agents.models import Deployment, RequestLog
from agents.selectors import trace_normalized
from reviewapp.setup import ensure_roles
from tests.support.turns import chat_turn  # the turn service, from synchronous code

MODEL_NAME, ENDPOINT_NAME = "main.bench.ratings_agent", "bench-ratings-agent"
QUESTIONS = (
    "What is MLflow tracing?",
    "How do I deploy an agent on Databricks model serving?",
    "How does agent evaluation judge retrieval?",
    "What does a retriever span record?",
    "How are review app ratings stored?",
)


@dataclass
class Turn:
    turn: RequestLog
    request_id: str
    span_id: str  # the retriever span rated in each POST

    @property
    def assessments_url(self) -> str:
        return f"/api/v1/requests/{self.request_id}/assessments/"


def reset_ratings() -> None:
    """Empty the rating tables (and the dedicated Redis db): each phase starts from nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE feedback_deliveryattempt, feedback_delivery, feedback_rating "
            "RESTART IDENTITY CASCADE"
        )
    redis.Redis.from_url(config.ARGS.broker_url).flushdb()


def set_up(agent: DemoAgent, reviewers: int, turns: int) -> tuple[list[Reviewer], list[Turn]]:
    """The database migrated, `reviewers` reviewers with tokens, the deployment pointed at this
    run's demo agent, and `turns` chat turns of it (those of earlier runs are reused)."""
    call_command("migrate", verbosity=0)
    ensure_roles()
    fields = {
        "display_name": "Bench ratings agent",
        "endpoint_name": ENDPOINT_NAME,
        "query_endpoint": agent.invocations_url(ENDPOINT_NAME),
        "agent_schema": "chat_completions",
        "feedback_sink": "databricks_feedback",
        "feedback_endpoint": "",  # derived: the demo agent's feedback endpoint
    }
    deployment = Deployment.objects.filter(model_name=MODEL_NAME, model_version="1").first()
    if deployment is None:
        deployment = agent_services.deployment_create(
            model_name=MODEL_NAME, model_version="1", **fields
        )
    else:  # the demo agent has a new port every run
        deployment = agent_services.deployment_update(deployment=deployment, **fields)
    people = reviewers_ensure(reviewers, prefix="bench-reviewer")
    existing = list(
        RequestLog.objects.filter(deployment=deployment, error="").order_by("pk")[:turns]
    )
    started = time.perf_counter()
    for i in range(len(existing), turns):
        asker = people[i % reviewers].user
        conversation = conversation_create(deployment=deployment, user=asker)
        turn = chat_turn(
            deployment=deployment,
            user=asker,
            conversation=conversation,
            message=f"{QUESTIONS[i % len(QUESTIONS)]} ({i})",
            custom_inputs={"top_k": 3},
        )
        if turn.error:
            raise RuntimeError(f"chat turn failed: {turn.error} {turn.error_detail}")
        existing.append(turn)
    if time.perf_counter() - started > 0.5:
        print(f"made chat turns with the demo agent in {time.perf_counter() - started:.1f} s")
    rated = []
    for turn in existing:
        trace = trace_normalized(turn.databricks_request_id)
        span_id = next(s.span_id for s in trace.iter_spans() if s.documents)
        rated.append(Turn(turn, turn.databricks_request_id, span_id))
    return people, rated


def rating_body(turn: Turn, n: int) -> dict:
    return {
        "text_assessments": [
            {
                "ratings": {"answer_correct": {"value": "negative"}},
                "free_text_comment": f"Misses the second half of the question ({n}).",
            }
        ],
        "retrieval_assessments": [
            {
                "position": n % 3,
                "step_id": turn.span_id,
                "ratings": {"chunk_relevance": {"value": "positive"}},
            }
        ],
    }


def turn_for(reviewer: int, k: int, reviewers: int, turns: list[Turn]) -> Turn:
    """A reviewer's k-th rating: each walks forward through the turns from its own offset, so
    it rates a different turn each time (a new rating, not a new version, until it has gone
    round all of them) and reviewers posting at the same moment rate different turns."""
    offset = reviewer * max(1, len(turns) // reviewers)
    return turns[(offset + k) % len(turns)]

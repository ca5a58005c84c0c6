"""Celery tasks of runs: a lane (evaluation/lanes.py) and the sweep that restarts the lanes of
a run whose workers all died."""

from celery import shared_task
from django.conf import settings

from evaluation import lanes, runs

# A lane stops claiming after RUN_LANE_SECONDS, then waits for the rows in flight, each
# bounded by its deployment's request timeout (at most 900 s).
LANE_SOFT_LIMIT_S = settings.RUN_LANE_SECONDS + 960


@shared_task(soft_time_limit=LANE_SOFT_LIMIT_S, time_limit=LANE_SOFT_LIMIT_S + 60)
def run_lane(run_id: int, width: int) -> None:
    """Idempotent: rows are claimed one lane at a time, and a row's turn has its own key."""
    if lanes.lane_run(run_id, width):
        run_lane.delay(run_id, width)  # hand over: the run has rows left


@shared_task
def runs_sweep() -> None:
    runs.runs_sweep()

"""Runs, the use cases every entry point (API, CLI through it, pages, tests) calls: create one
from a run file, cancel it, resume it, and take back a run whose lanes all died.

A run's rows are saved with it; Celery lanes (evaluation/lanes.py) then work them, each lane
holding at most its share of the run's `concurrency` rows at once. More workers take more
lanes, on any machine that reaches the broker and the database.
"""

import math
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from evaluation.models import DatasetRow, RowStatus, Run, RunRow, RunStatus
from evaluation.run_specs import check_run_spec
from reviewapp import roles


def require_runner(user: AbstractBaseUser) -> None:
    if not roles.can_review(user):
        raise PermissionDenied("Only reviewers and admins may run batches and evaluations.")


def run_create(*, user: AbstractBaseUser, spec: dict) -> Run:
    """The run, saved with its rows and started; ValidationError({field: why}) with nothing
    saved when the run file cannot be run."""
    require_runner(user)
    checked = check_run_spec(spec, user)
    base_turns: dict[int, int | None] = {}
    if checked.base_run is not None:
        base = checked.base_run
        if base.status == RunStatus.RUNNING:
            done = base.rows.filter(status=RowStatus.DONE).count()
            raise ValidationError(
                {"run": f"{base.name!r} is still running ({done} of {base.row_count} rows "
                        f"done); wait for it: reviewapp run stream {base.name}"}
            )  # fmt: skip
        base_turns = dict(base.rows.values_list("position", "turn_id"))
    try:
        return _saved(user, spec, checked, base_turns)
    except IntegrityError:  # a run of that name was made meanwhile
        raise ValidationError({"name": ["A run of this name exists; pick another name."]}) from None


def _saved(user, spec, checked, base_turns) -> Run:
    with transaction.atomic():
        run = Run.objects.create(
            name=checked.name or _generated_name(checked),
            kind=checked.kind,
            deployment=checked.deployment,
            dataset_version=checked.dataset_version,
            base_run=checked.base_run,
            column_mapping=checked.column_mapping,
            evaluators=checked.evaluators,
            concurrency=checked.concurrency,
            spec=spec,
            created_by=user,
            heartbeat_at=timezone.now(),
        )
        rows = DatasetRow.objects.filter(version=checked.dataset_version).order_by("position")
        RunRow.objects.bulk_create(
            (
                RunRow(
                    run=run,
                    position=position,
                    dataset_row_id=row_id,
                    turn_id=base_turns.get(position),
                )
                for row_id, position in rows.values_list("pk", "position").iterator()
            ),
            batch_size=2000,
        )
        run.row_count = checked.dataset_version.row_count
        run.save(update_fields=["row_count"])
        transaction.on_commit(lambda: start_lanes(run))
    return run


def _generated_name(checked) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    dataset = checked.dataset_version.dataset.name[:60]  # the name stays within 100 characters
    return f"{dataset}-{checked.kind}-{stamp}-{secrets.token_hex(2)}"


def lane_widths(concurrency: int) -> list[int]:
    """The run's concurrency split into lanes of at most RUN_LANE_WIDTH rows each."""
    lanes = max(1, math.ceil(concurrency / settings.RUN_LANE_WIDTH))
    return [concurrency // lanes + (1 if i < concurrency % lanes else 0) for i in range(lanes)]


def start_lanes(run: Run) -> None:
    from evaluation.tasks import run_lane  # the task module imports the lanes, which import us

    for width in lane_widths(run.concurrency):
        run_lane.delay(run.pk, width)


def run_cancel(run: Run) -> bool:
    """Stop sending the run's rows: lanes finish the rows in flight and claim no more. False
    when it had already ended."""
    changed = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return bool(changed)


def run_resume(run: Run) -> int:
    """Send the rows not answered yet (a cancelled run, or one whose workers all died): the
    number of such rows, 0 when there are none (nothing is started)."""
    left = run.rows.exclude(status=RowStatus.DONE).count()
    if not left:
        return 0
    stale = timezone.now() - timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)
    resumable = Q(status=RunStatus.CANCELLED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale)
    # One resume wins; a run whose lanes are alive is not given a second set of them.
    if not Run.objects.filter(resumable, pk=run.pk).update(
        status=RunStatus.RUNNING, finished_at=None, heartbeat_at=timezone.now()
    ):
        raise ValidationError({"run": [f"{run.name} is running; its lanes are alive."]})
    run.refresh_from_db()
    transaction.on_commit(lambda: start_lanes(run))
    return left


def runs_sweep() -> list[int]:
    """Runs still running whose lanes all stopped beating (their workers died, or the broker
    lost their messages) get new lanes; the ids of those runs."""
    stale = timezone.now() - timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)
    taken = []
    for run in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale):
        # One sweeper wins a run: the heartbeat it read must still be the run's.
        if Run.objects.filter(pk=run.pk, heartbeat_at=run.heartbeat_at).update(
            heartbeat_at=timezone.now()
        ):
            start_lanes(run)
            taken.append(run.pk)
    return taken

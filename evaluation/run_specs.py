"""A run file (`run.yml`, sent as JSON by the CLI) checked before anything is saved.

A batch run: `deployment`, `data` (`name@version` or `name` for the newest), `column_mapping`
(`message` required, `history`, `custom_inputs.<key>`) and `concurrency`. An evaluation run:
`run` (the base batch run), `evaluators`, and an optional `column_mapping` giving the
built-ins' inputs. Every error names its field (`column_mapping.message`), which the CLI turns
into the file's line.
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404

from agents import selectors as agent_selectors
from agents.models import Deployment
from evaluation import datasets, evaluators, mapping
from evaluation.models import RUN_NAME, DatasetVersion, Run, RunKind

BATCH_KEYS = {"name", "deployment", "data", "column_mapping", "concurrency", "description"}
EVALUATION_KEYS = {"name", "run", "evaluators", "column_mapping", "concurrency", "description"}


@dataclass
class CheckedRun:
    name: str
    kind: str
    deployment: Deployment | None
    dataset_version: DatasetVersion
    base_run: Run | None
    column_mapping: dict
    evaluators: list[dict]
    concurrency: int


def check_run_spec(spec: Any, user: AbstractBaseUser) -> CheckedRun:
    if not isinstance(spec, dict):
        raise ValidationError({"": "a run file is a mapping of keys (deployment, data, ...)"})
    is_evaluation = "run" in spec
    allowed = EVALUATION_KEYS if is_evaluation else BATCH_KEYS
    unknown = sorted(set(spec) - allowed)
    if unknown:
        kind = "an evaluation" if is_evaluation else "a batch"
        takes = ", ".join(sorted(allowed))
        raise ValidationError({unknown[0]: f"unknown key ({kind} run takes: {takes})"})
    name = _name(spec.get("name"))
    concurrency = _concurrency(spec.get("concurrency", settings.RUN_DEFAULT_CONCURRENCY))
    if is_evaluation:
        base = _base_run(spec["run"], user)
        version = base.dataset_version
        columns = version.columns
        for key in ("deployment", "data"):
            if key in spec:
                raise ValidationError({key: "an evaluation run uses its base run's"})
        checked = evaluators.check_evaluators(
            spec.get("evaluators"),
            columns=columns,
            find_judge=lambda ref, field: find_deployment(user, ref, field).pk,
        )
        column_mapping = mapping.check_mapping(
            spec.get("column_mapping", {}),
            field="column_mapping",
            columns=columns,
            with_run=True,
            targets=tuple(evaluators.INPUT_DEFAULTS),
        )
        for spec_item in checked:  # the run's mapping is every built-in's default
            if spec_item["type"] != evaluators.JUDGE:
                spec_item["column_mapping"] = {**column_mapping, **spec_item["column_mapping"]}
        return CheckedRun(name, RunKind.EVALUATION, None, version, base, column_mapping,
                          checked, concurrency)  # fmt: skip
    for key in ("deployment", "data", "column_mapping"):
        if key not in spec:
            raise ValidationError({key: "is required"})
    deployment = find_deployment(user, spec["deployment"], "deployment")
    version = _data(spec["data"])
    column_mapping = mapping.check_mapping(
        spec["column_mapping"],
        field="column_mapping",
        columns=version.columns,
        with_run=False,
        targets=mapping.TURN_TARGETS,
    )
    if "message" not in column_mapping:
        raise ValidationError({"column_mapping.message": "is required: what each row asks"})
    return CheckedRun(name, RunKind.BATCH, deployment, version, None, column_mapping, [],
                      concurrency)  # fmt: skip


def _name(name: Any) -> str:
    if name is None:
        return ""
    if not isinstance(name, str):
        raise ValidationError({"name": "must be a text"})
    try:
        RUN_NAME(name)
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages[0]}) from None
    if Run.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a run named {name!r} exists; pick another name"})
    return name


def _concurrency(value: Any) -> int:
    limit = settings.RUN_MAX_CONCURRENCY
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValidationError({"concurrency": f"must be a whole number from 1 to {limit}"})
    return value


def _base_run(name: Any, user: AbstractBaseUser) -> Run:
    base = Run.objects.filter(name=name).select_related("dataset_version").first()
    if base is None:
        raise ValidationError({"run": f"no run named {name!r}"})
    if base.kind != RunKind.BATCH:
        raise ValidationError({"run": f"{name!r} is an evaluation run; name a batch run"})
    try:
        agent_selectors.deployment_get_for_user(user, base.deployment_id, include_disabled=True)
    except Http404:
        raise ValidationError({"run": f"no run named {name!r}"}) from None
    return base


def _data(ref: Any) -> DatasetVersion:
    if not isinstance(ref, str) or not ref:
        raise ValidationError({"data": "name a dataset as name@version (the CLI uploads files)"})
    name, _, number = ref.partition("@")
    if number and not number.isdigit():
        raise ValidationError({"data": f"{ref!r}: the version after '@' is a number"})
    try:
        return datasets.dataset_version(name, int(number) if number else None)
    except Http404:
        raise ValidationError({"data": f"no dataset version {ref!r}"}) from None


def find_deployment(user: AbstractBaseUser, ref: Any, field: str) -> Deployment:
    """A deployment the user may chat with, by id, endpoint name or display name."""
    visible = agent_selectors.deployments_visible_to(user)
    if isinstance(ref, int) and not isinstance(ref, bool):
        found = list(visible.filter(pk=ref))
    elif isinstance(ref, str) and ref:
        found = list(visible.filter(Q(endpoint_name=ref) | Q(display_name=ref))[:2])
    else:
        raise ValidationError({field: "name a deployment by id, endpoint name or display name"})
    if not found:
        raise ValidationError({field: f"no deployment {ref!r} that you may use"})
    if len(found) > 1:
        raise ValidationError({field: f"{ref!r} names several deployments; use its id"})
    return found[0]

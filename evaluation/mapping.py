"""`column_mapping`, prompt flow's way: each target (`message`, `history`,
`custom_inputs.<key>`, or an evaluator's input) takes a value written with references,
`${data.<column>}` (the dataset row) and, in evaluation runs, `${run.outputs.answer}` and
`${run.outputs.trace}` (the base run's turn).

A value that is one reference alone keeps the referenced value's type (a list stays a list);
references inside longer text are written as text (JSON for objects). A value without a
reference is a constant.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

REFERENCE = re.compile(r"\$\{([^}]*)\}")
RUN_OUTPUTS = ("answer", "trace")
CUSTOM_INPUTS_PREFIX = "custom_inputs."
TURN_TARGETS = ("message", "history")


@dataclass(frozen=True)
class Sources:
    """What references may read for one row."""

    data: dict[str, Any]
    answer: str | None = None
    trace: Any = None


def references(value: Any) -> list[str]:
    """The references in a mapped value (`data.question`, `run.outputs.answer`)."""
    if not isinstance(value, str):
        return []
    return [match.strip() for match in REFERENCE.findall(value)]


def check_mapping(
    mapping: Any, *, field: str, columns: list[str], with_run: bool, targets: tuple[str, ...]
) -> dict[str, Any]:
    """The mapping, checked: an object whose keys are `targets` or `custom_inputs.<key>` and
    whose references exist. ValidationError({field.key: why}) otherwise."""
    if not isinstance(mapping, dict):
        raise ValidationError({field: "must be a mapping of target: value"})
    errors: dict[str, str] = {}
    for target, value in mapping.items():
        where = f"{field}.{target}"
        if target not in targets and not (
            target.startswith(CUSTOM_INPUTS_PREFIX) and len(target) > len(CUSTOM_INPUTS_PREFIX)
        ):
            names = ", ".join([*targets, "custom_inputs.<key>"])
            errors[where] = f"unknown target {target!r} (use one of: {names})"
            continue
        if not isinstance(value, str | int | float | bool) and value is not None:
            errors[where] = "must be a text, number or boolean (lists come from a column)"
            continue
        for ref in references(value):
            problem = _reference_problem(ref, columns, with_run)
            if problem:
                errors[where] = problem
                break
    if errors:
        raise ValidationError(errors)
    return mapping


def _reference_problem(ref: str, columns: list[str], with_run: bool) -> str:
    if ref.startswith("data."):
        column = ref[len("data.") :]
        if column not in columns:
            return f"the data has no column {column!r} (its columns: {', '.join(columns)})"
        return ""
    if ref.startswith("run.outputs."):
        if not with_run:
            return f"${{{ref}}} needs an evaluation run (`run: <base run>`)"
        if ref[len("run.outputs.") :] not in RUN_OUTPUTS:
            return f"${{{ref}}}: a run's outputs are {', '.join(RUN_OUTPUTS)}"
        return ""
    return f"${{{ref}}} is not a reference: use ${{data.<column>}} or ${{run.outputs.answer}}"


def resolve(value: Any, sources: Sources) -> Any:
    """The value for one row."""
    if not isinstance(value, str):
        return value
    refs = REFERENCE.findall(value)
    if not refs:
        return value
    if REFERENCE.fullmatch(value.strip()):
        return _lookup(refs[0].strip(), sources)
    return REFERENCE.sub(lambda match: _as_text(_lookup(match.group(1).strip(), sources)), value)


def _lookup(ref: str, sources: Sources) -> Any:
    if ref.startswith("data."):
        return sources.data.get(ref[len("data.") :])
    if ref == "run.outputs.answer":
        return sources.answer
    return sources.trace


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass
class TurnInputs:
    message: str
    history: list[dict[str, str]]
    custom_inputs: dict[str, Any] | None  # None: the deployment's default


def turn_inputs(mapping: dict[str, Any], sources: Sources) -> TurnInputs:
    """What one row sends: the message, its history and custom_inputs. ValidationError when
    the row's values cannot be sent (an empty message, a history that is not a list of
    messages)."""
    message = _as_text(resolve(mapping.get("message"), sources))
    history = resolve(mapping.get("history"), sources) or []
    if isinstance(history, str):
        try:
            history = json.loads(history)
        except ValueError:
            raise ValidationError("history must be a JSON list of {role, content}") from None
    if not isinstance(history, list) or not all(
        isinstance(item, dict) and isinstance(item.get("content"), str) for item in history
    ):
        raise ValidationError("history must be a list of {role, content} messages")
    custom = {
        target[len(CUSTOM_INPUTS_PREFIX) :]: resolve(value, sources)
        for target, value in mapping.items()
        if target.startswith(CUSTOM_INPUTS_PREFIX)
    }
    return TurnInputs(message=message, history=history, custom_inputs=custom or None)

"""Evaluators: built-in code evaluators and deployments as judges.

Each scores one row from its inputs (mapped with `column_mapping`, defaults below) into
{value, rationale}, {skipped} (the row lacks what it needs: not counted) or {error} (counted
and shown; the run goes on). Code evaluators' results are assessments of source type CODE, a
judge's of LLM_JUDGE (evaluation/lanes.py saves them as ratings, forwarded like any other).
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from agents.traces import normalize_trace
from evaluation import mapping

JUDGE = "judge"
SOURCE_CODE = "CODE"
SOURCE_JUDGE = "LLM_JUDGE"
JUDGE_TARGETS = mapping.TURN_TARGETS
INPUT_DEFAULTS = {
    "response": "${run.outputs.answer}",
    "expected_response": "${data.expected_response}",
    "expected_facts": "${data.expected_facts}",
    "expected_retrieved_context": "${data.expected_retrieved_context}",
}


@dataclass(frozen=True)
class RowContext:
    """What an evaluator reads for one row: the dataset row and the base run's turn."""

    data: dict[str, Any]
    turn: Any  # agents.models.RequestLog | None

    @property
    def sources(self) -> mapping.Sources:
        answer = self.turn.response if self.turn is not None else None
        trace = self.turn.trace if self.turn is not None else None
        return mapping.Sources(data=self.data, answer=answer, trace=trace)


def _norm(text: Any) -> str:
    return " ".join(str(text).split()).casefold()


def _needs(inputs: dict, *names: str) -> str:
    missing = [name for name in names if inputs.get(name) in (None, "", [])]
    return f"the row has no {', '.join(missing)}" if missing else ""


def exact_match(inputs: dict, ctx: RowContext) -> dict:
    if why := _needs(inputs, "response", "expected_response"):
        return {"skipped": why}
    return {"value": _norm(inputs["response"]) == _norm(inputs["expected_response"])}


def contains(inputs: dict, ctx: RowContext) -> dict:
    if why := _needs(inputs, "response", "expected_response"):
        return {"skipped": why}
    return {"value": _norm(inputs["expected_response"]) in _norm(inputs["response"])}


def expected_facts(inputs: dict, ctx: RowContext) -> dict:
    """The share of the expected facts the answer states (each as a phrase, case and
    spacing ignored)."""
    if why := _needs(inputs, "response", "expected_facts"):
        return {"skipped": why}
    facts = inputs["expected_facts"]
    if isinstance(facts, str):
        facts = [facts]
    answer = _norm(inputs["response"])
    missing = [fact for fact in facts if _norm(fact) not in answer]
    rationale = "Missing: " + "; ".join(missing) if missing else "Every fact is stated."
    return {"value": round(1 - len(missing) / len(facts), 6), "rationale": rationale}


def latency(inputs: dict, ctx: RowContext) -> dict:
    if ctx.turn is None:
        return {"skipped": "the row has no answer"}
    return {"value": ctx.turn.execution_time_ms}


def errors(inputs: dict, ctx: RowContext) -> dict:
    if ctx.turn is None:
        return {"value": 1, "rationale": "The row was never answered."}
    return {"value": 1 if ctx.turn.error else 0, "rationale": ctx.turn.error or ""}


def tokens(inputs: dict, ctx: RowContext) -> dict:
    trace = ctx.turn.trace if ctx.turn is not None else None
    usage = normalize_trace(trace).token_usage if trace else None
    if not usage or usage.get("total_tokens") is None:
        return {"skipped": "the answer's trace reports no token usage"}
    return {"value": usage["total_tokens"]}


def retrieval_hit_rate(inputs: dict, ctx: RowContext) -> dict:
    """The share of the expected documents (`doc_uri`s, or objects with one) that the
    trace's retrievers returned."""
    if why := _needs(inputs, "expected_retrieved_context"):
        return {"skipped": why}
    expected = inputs["expected_retrieved_context"]
    if isinstance(expected, str):
        expected = [expected]  # one document, as a CSV cell gives it
    if not isinstance(expected, list):
        return {"error": "expected_retrieved_context is a list of doc_uris"}
    expected = [e.get("doc_uri") if isinstance(e, dict) else e for e in expected]
    trace = ctx.turn.trace if ctx.turn is not None else None
    if not trace:
        return {"error": "the answer has no trace to read retrieved documents from"}
    retrieved = {
        document.doc_uri
        for span in normalize_trace(trace).iter_spans()
        for document in span.documents or []
    }
    missed = [uri for uri in expected if uri not in retrieved]
    rationale = "Not retrieved: " + ", ".join(map(str, missed)) if missed else "All retrieved."
    return {"value": round(1 - len(missed) / len(expected), 6), "rationale": rationale}


@dataclass(frozen=True)
class Builtin:
    score: Callable[[dict, RowContext], dict]
    inputs: tuple[str, ...]
    higher_is_better: bool = True


BUILTINS = {
    "exact_match": Builtin(exact_match, ("response", "expected_response")),
    "contains": Builtin(contains, ("response", "expected_response")),
    "expected_facts": Builtin(expected_facts, ("response", "expected_facts")),
    "latency": Builtin(latency, (), higher_is_better=False),
    "errors": Builtin(errors, (), higher_is_better=False),
    "tokens": Builtin(tokens, (), higher_is_better=False),
    "retrieval_hit_rate": Builtin(retrieval_hit_rate, ("expected_retrieved_context",)),
}


def higher_is_better(spec: dict) -> bool:
    builtin = BUILTINS.get(spec["type"])
    return builtin.higher_is_better if builtin else True


def source_type(spec: dict) -> str:
    return SOURCE_JUDGE if spec["type"] == JUDGE else SOURCE_CODE


def builtin_score(spec: dict, ctx: RowContext) -> dict:
    builtin = BUILTINS[spec["type"]]
    sources = ctx.sources
    inputs = {
        name: mapping.resolve(spec["column_mapping"].get(name, INPUT_DEFAULTS[name]), sources)
        for name in builtin.inputs
    }
    return builtin.score(inputs, ctx)


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def judge_result(answer: str) -> dict:
    """A judge's answer read as {score, rationale}: a JSON object (optionally in a ```json
    fence) with a numeric or boolean `score`. Anything else is the row's error."""
    text = (answer or "").strip()
    fenced = _FENCE.match(text)
    try:
        parsed = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        parsed = None
    score = parsed.get("score") if isinstance(parsed, dict) else None
    if not isinstance(score, int | float) or not math.isfinite(score):
        shown = text[:200] + ("…" if len(text) > 200 else "")
        return {"error": f"The judge did not answer {{score, rationale}}: {shown!r}"}
    rationale = parsed.get("rationale")
    return {"value": score, "rationale": rationale if isinstance(rationale, str) else ""}


def check_evaluators(
    given: Any, *, columns: list[str], find_judge: Callable[[Any, str], int]
) -> list[dict]:
    """The evaluator list of a run file, checked and normalized to
    {name, type, column_mapping, deployment_id?}. `find_judge(reference, field)` gives a
    judge deployment's id or raises ValidationError."""
    if not isinstance(given, list) or not given:
        raise ValidationError({"evaluators": "must be a list of at least one evaluator"})
    out, names = [], set()
    for index, item in enumerate(given):
        field = f"evaluators[{index}]"
        if isinstance(item, str):
            item = {"type": item}
        if not isinstance(item, dict):
            raise ValidationError({field: "must be a built-in's name or a mapping"})
        unknown = set(item) - {"name", "type", "deployment", "column_mapping"}
        if unknown:
            raise ValidationError({field: f"unknown key(s): {', '.join(sorted(unknown))}"})
        kind = item.get("type") or (JUDGE if "deployment" in item else None)
        if not isinstance(kind, str) or (kind != JUDGE and kind not in BUILTINS):
            names_list = ", ".join([*BUILTINS, "judge (with deployment)"])
            raise ValidationError({f"{field}.type": f"unknown evaluator {kind!r}: {names_list}"})
        name = item.get("name") or kind
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ValidationError({f"{field}.name": "use 1-64 letters, digits, '.', '_', '-'"})
        if name in names:
            raise ValidationError({f"{field}.name": f"two evaluators are named {name!r}"})
        names.add(name)
        targets = JUDGE_TARGETS if kind == JUDGE else tuple(BUILTINS[kind].inputs)
        checked = mapping.check_mapping(
            item.get("column_mapping", {}),
            field=f"{field}.column_mapping",
            columns=columns,
            with_run=True,
            targets=targets,
        )
        spec = {"name": name, "type": kind, "column_mapping": checked}
        if kind == JUDGE:
            if "message" not in checked:
                raise ValidationError(
                    {f"{field}.column_mapping.message": "a judge needs the message it is sent"}
                )
            spec["deployment_id"] = find_judge(item.get("deployment"), f"{field}.deployment")
        out.append(spec)
    return out

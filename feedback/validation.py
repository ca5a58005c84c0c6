"""Checks a rating must pass before it is saved (the Databricks feedback API accepts anything;
we don't): known label schema names, values that fit each schema's input type, documents that
exist.

`clean_text_assessment` and `clean_retrieval_assessments` return the cleaned protocol shapes or
raise ValidationError with every problem found, each naming where it is.
"""

import math
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from agents.trace_values import hex_span_id
from feedback.label_values import (
    MAX_TEXT_CHARS,
    THUMBS_VALUES,
    clean_value,
    label_given,
)
from feedback.models import CHUNK_RELEVANCE, EXPECTED_RESPONSE, LabelSchema

MAX_RATIONALE_CHARS = 5_000
MAX_DOCUMENT_RATINGS = 1_000
MAX_ERRORS = 20  # a list with thousands of bad items gets the first few messages, not 4 MB
_RATING_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class RetrieverSpan:
    span_id: str
    name: str
    positions: frozenset[int]  # a retriever's output may hold non-documents between them

    @property
    def document_count(self) -> int:
        return len(self.positions)


def retriever_spans(documents: dict[str, dict] | None) -> dict[str, RetrieverSpan]:
    """Spans whose output is a list of documents, by span id (lowercase hex), as
    agents.selectors.retriever_documents reads them from the trace's stored outline."""
    return {
        span_id: RetrieverSpan(span_id, found["name"], frozenset(found["positions"]))
        for span_id, found in (documents or {}).items()
    }


def _optional_text(value: Any, where: str, errors: list[str], limit: int = MAX_TEXT_CHARS):
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors.append(f"{where} must be a string.")
        return None
    if len(value) > limit:
        errors.append(f"{where} is longer than {limit:,} characters.")
        return None
    return value if value.strip() else None


def _ratings_map(value: Any, where: str, errors: list[str]) -> dict | None:
    if not isinstance(value, dict):
        errors.append(f"{where} must be an object of rating names to {{value, rationale}}.")
        return None
    for name, rating in value.items():
        if not isinstance(rating, dict) or "value" not in rating:
            errors.append(f'{where}.{name} must be an object with a "value".')
            return None
        unknown = sorted(set(rating) - {"value", "rationale"})
        if unknown:
            errors.append(f"{where}.{name} has unknown field(s): {', '.join(unknown)}.")
            return None
    return value


TEXT_ASSESSMENT_FIELDS = {
    "ratings",
    "expectations",
    "free_text_comment",
    "suggested_output",
    "step_id",
}


def clean_text_assessment(schemas: list[LabelSchema], data: Any, *, required: bool = False) -> dict:
    """{ratings, expectations, free_text_comment, suggested_output} with only what was given.

    Feedback schemas are answered in `ratings`, expectations in `expectations` (both
    {name: {value, rationale?}}); `expected_response` is the Databricks record's
    `suggested_output`, and is accepted in either place. `required` refuses an assessment that
    leaves out a required schema (a review session's label)."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ValidationError("A text assessment must be an object.")
    unknown = sorted(set(data) - TEXT_ASSESSMENT_FIELDS)
    if unknown:
        errors.append(f"text_assessments has unknown field(s): {', '.join(unknown)}.")
    by_name = {s.name: s for s in schemas}
    cleaned: dict[str, Any] = {}
    for field, expectation in (("ratings", False), ("expectations", True)):
        given = _ratings_map(data.get(field, {}), field, errors) or {}
        out = {}
        for name, rating in given.items():
            schema = by_name.get(name)
            if schema is None or schema.is_expectation != expectation:
                known = ", ".join(s.name for s in schemas if s.is_expectation == expectation)
                errors.append(
                    f"{field}.{name}: there is no such {_kind_word(expectation)} here "
                    f"({'it has ' + known if known else 'there are none'})."
                )
                continue
            try:
                value = clean_value(schema, rating["value"])
            except ValueError as exc:
                errors.append(f"{field}.{name}: the value {exc}.")
                continue
            if name == EXPECTED_RESPONSE:
                data = {**data, "suggested_output": data.get("suggested_output") or value}
                continue
            out[name] = {"value": value}
            rationale = _optional_text(
                rating.get("rationale"), f"{field}.{name}.rationale", errors, MAX_RATIONALE_CHARS
            )
            if rationale:
                out[name]["rationale"] = rationale
        if out:
            cleaned[field] = out
    for field in ("free_text_comment", "suggested_output"):
        text = _optional_text(data.get(field), field, errors)
        if text:
            cleaned[field] = text
    step_id = _optional_text(data.get("step_id"), "step_id", errors, limit=128)
    if step_id:
        cleaned["step_id"] = step_id  # kept as given: it names the rated step, if any
    if required:
        missing = [s.name for s in schemas if s.required and not label_given(cleaned, s)]
        if missing:
            errors.append(f"Required: {', '.join(missing)}.")
    if errors:
        raise ValidationError(errors)
    return cleaned


def _kind_word(expectation: bool) -> str:
    return "expectation" if expectation else "question"


def clean_retrieval_assessments(spans: dict[str, RetrieverSpan], data: Any) -> list[dict]:
    """[{position, step_id, ratings {chunk_relevance}, free_text_comment?}], one per document;
    an item without `position` rates the retrieval as a whole ({step_id?, ratings,
    free_text_comment?}, any rating names: the Databricks docs rate `groundedness` that way)."""
    if not isinstance(data, list):
        raise ValidationError("retrieval_assessments must be a list.")
    if len(data) > MAX_DOCUMENT_RATINGS:
        raise ValidationError(
            f"retrieval_assessments has {len(data):,} items; at most {MAX_DOCUMENT_RATINGS:,}."
        )
    errors: list[str] = []
    cleaned, seen = [], set()
    for i, item in enumerate(data):
        where = f"retrieval_assessments[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{where} must be an object.")
            continue
        unknown = sorted(set(item) - {"position", "step_id", "ratings", "free_text_comment"})
        if unknown:
            errors.append(f"{where} has unknown field(s): {', '.join(unknown)}.")
            continue
        if "position" not in item:
            whole = _clean_whole_retrieval_rating(spans, item, where, errors)
            if whole is not None and whole.get("step_id") in seen:
                errors.append(f"{where} rates the retrieval of that step again.")
            elif whole is not None:
                seen.add(whole.get("step_id"))
                cleaned.append(whole)
            continue
        span = _retriever_span(spans, item.get("step_id"), where, errors)
        position = item.get("position")
        if span is None:
            continue
        if isinstance(position, bool) or not isinstance(position, int):
            errors.append(f"{where}.position must be a whole number (the document's index).")
            continue
        if position not in span.positions:
            errors.append(
                f"{where}.position {position} is not one of the {span.document_count} "
                f"document(s) that span {span.span_id} retrieved "
                f"(positions {_ranges(span.positions)})."
            )
            continue
        if (span.span_id, position) in seen:
            errors.append(f"{where} rates document {position} of span {span.span_id} again.")
            continue
        seen.add((span.span_id, position))
        out = _clean_document_rating(item, where, errors)
        if out is not None:
            cleaned.append({"position": position, "step_id": span.span_id, **out})
    if errors:
        more = len(errors) - MAX_ERRORS
        raise ValidationError(errors[:MAX_ERRORS] + ([f"… and {more} more."] if more > 0 else []))
    return cleaned


def _clean_whole_retrieval_rating(
    spans: dict[str, RetrieverSpan], item: dict, where: str, errors: list[str]
) -> dict | None:
    out: dict[str, Any] = {}
    if item.get("step_id") not in (None, ""):
        span = _retriever_span(spans, item["step_id"], where, errors)
        if span is None:
            return None
        out["step_id"] = span.span_id
    ratings = _ratings_map(item.get("ratings", {}), f"{where}.ratings", errors)
    if ratings is None:
        return None
    cleaned: dict[str, dict] = {}
    for name, rating in ratings.items():
        if not _RATING_NAME.match(str(name)):
            errors.append(f"{where}.ratings: {name!r} is not a rating name (letters, digits, _).")
            return None
        value = rating["value"]
        if isinstance(value, dict | list) or value is None or not _is_number_or_text(value):
            errors.append(f"{where}.ratings.{name}.value must be a string, number or boolean.")
            return None
        # The sinks send it on as text (MLflow's `rationale` is a string): check it as such.
        found = len(errors)
        rationale = _optional_text(
            rating.get("rationale"),
            f"{where}.ratings.{name}.rationale",
            errors,
            MAX_RATIONALE_CHARS,
        )
        if len(errors) > found:
            return None
        cleaned[name] = {"value": value, **({"rationale": rationale} if rationale else {})}
    if cleaned:
        out["ratings"] = cleaned
    comment = _optional_text(item.get("free_text_comment"), f"{where}.free_text_comment", errors)
    if comment:
        out["free_text_comment"] = comment
    if "ratings" not in out and "free_text_comment" not in out:
        errors.append(f"{where} rates nothing: give ratings or a comment.")
        return None
    return out


def _is_number_or_text(value: Any) -> bool:
    if isinstance(value, str):
        return 0 < len(value) <= MAX_TEXT_CHARS
    return isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))


def _ranges(positions: frozenset[int]) -> str:
    ordered = sorted(positions)
    if ordered == list(range(len(ordered))):
        return f"0 to {len(ordered) - 1}" if ordered else "none"
    return ", ".join(map(str, ordered[:20])) + ("…" if len(ordered) > 20 else "")


def _retriever_span(spans, step_id: Any, where: str, errors: list[str]) -> RetrieverSpan | None:
    if not spans:
        errors.append(f"{where}: this answer's trace has no retriever span with documents.")
        return None
    if step_id in (None, ""):
        if len(spans) == 1:
            return next(iter(spans.values()))
        errors.append(f"{where}.step_id is needed: the trace has {len(spans)} retriever spans.")
        return None
    try:  # as shown here (hex), or as MLflow writes it in the trace JSON (0x-hex, base64)
        span = spans.get(hex_span_id(step_id) or "")
    except (ValueError, TypeError):
        span = None
    if span is None:
        errors.append(
            f"{where}.step_id {step_id!r} is not a retriever span of this answer's trace "
            f"(those are {', '.join(spans)})."
        )
    return span


def _clean_document_rating(item: dict, where: str, errors: list[str]) -> dict | None:
    ratings = _ratings_map(item.get("ratings", {}), f"{where}.ratings", errors)
    if ratings is None:
        return None
    unknown = sorted(set(ratings) - {CHUNK_RELEVANCE})
    if unknown:
        errors.append(
            f"{where}.ratings: unknown rating(s) {', '.join(unknown)}; documents are rated with "
            f"{CHUNK_RELEVANCE} (positive = relevant)."
        )
        return None
    out: dict[str, Any] = {}
    if CHUNK_RELEVANCE in ratings:
        value = ratings[CHUNK_RELEVANCE]["value"]
        if value not in THUMBS_VALUES:
            errors.append(f'{where}.ratings.{CHUNK_RELEVANCE} must be "positive" or "negative".')
            return None
        out["ratings"] = {CHUNK_RELEVANCE: {"value": value}}
        rationale = _optional_text(
            ratings[CHUNK_RELEVANCE].get("rationale"),
            f"{where}.ratings.{CHUNK_RELEVANCE}.rationale",
            errors,
            MAX_RATIONALE_CHARS,
        )
        if rationale:
            out["ratings"][CHUNK_RELEVANCE]["rationale"] = rationale
    comment = _optional_text(item.get("free_text_comment"), f"{where}.free_text_comment", errors)
    if comment:
        out["free_text_comment"] = comment
    if not out:
        errors.append(f"{where} rates nothing: give ratings.{CHUNK_RELEVANCE} or a comment.")
        return None
    return out

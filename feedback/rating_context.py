"""What the rating templates need: the label schemas with the reviewer's current answers, the
current rating's delivery state, and one document's rating. Shared by the template tags (first
render) and the views (after a save), so both render the same markup."""

from typing import Any

from agents.models import FeedbackSink, RequestLog
from feedback import selectors
from feedback.label_values import label_given, label_schemas_for
from feedback.models import CHUNK_RELEVANCE, EXPECTED_RESPONSE, DeliveryStatus, Rating


def _status(turn: RequestLog, rating: Rating | None) -> dict[str, Any]:
    delivery = selectors.delivery_of(rating)
    return {
        "rating": rating,
        "delivery": delivery,
        "forwards": turn.deployment.effective_feedback_sink != FeedbackSink.NONE,
        "destination": turn.deployment.feedback_destination,
        "in_flight": bool(
            delivery and delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
        ),
    }


def _shown_value(value) -> dict[str, Any]:
    """`value` for single inputs, `values` (a list) for the list types, `lines` for a textarea."""
    if isinstance(value, list):
        return {"value": "", "values": value, "lines": "\n".join(value)}
    return {"value": "" if value is None else str(value), "values": [], "lines": ""}


def rating_bar_context(
    turn: RequestLog,
    user,
    *,
    errors: list[str] | None = None,
    posted: dict | None = None,
    rating: Rating | bool | None = False,
) -> dict[str, Any]:
    if rating is False:
        rating = selectors.rating_current(turn, user)
    text = posted if posted is not None else (rating.text_assessment if rating else {})
    questions = [
        {"question": schema, **_shown_value(label_given(text, schema))}
        for schema in label_schemas_for(turn.deployment)
        if schema.name != EXPECTED_RESPONSE  # the "better answer" box is always there
    ]
    return {
        "turn": turn,
        "questions": questions,
        "comment": text.get("free_text_comment", ""),
        "suggested_output": text.get("suggested_output", ""),
        "errors": errors or [],
        **_status(turn, rating),
    }


def document_rating_context(
    turn: RequestLog,
    user,
    span_id: str,
    position: int,
    *,
    errors: list[str] | None = None,
    rating: Rating | bool | None = False,
) -> dict[str, Any]:
    if rating is False:
        rating = selectors.rating_current(turn, user)
    mine = {}
    for doc in rating.retrieval_assessments if rating else []:
        if doc.get("step_id") == span_id and doc.get("position") == position:
            mine = doc
    return {
        "turn": turn,
        "span_id": span_id,
        "position": position,
        "relevance": mine.get("ratings", {}).get(CHUNK_RELEVANCE, {}).get("value", ""),
        "comment": mine.get("free_text_comment", ""),
        "errors": errors or [],
        **_status(turn, rating),
    }

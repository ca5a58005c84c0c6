"""Reads for the review pages: my sessions with their progress, an item's surroundings (the
conversation before it, the documents it retrieved, my previous and next items) and the
disagreements as rows of each reviewer's values. Built on review.session_selectors."""

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F

from agents import selectors as agent_selectors
from agents import tracking
from agents.models import RequestLog
from agents.trace_model import Span
from agents.trace_outline import OutlineSpan
from feedback.label_values import label_given
from feedback.models import LabelSchema, Rating
from review import forms
from review.models import ReviewItem, ReviewSession, ReviewSkip, ReviewSlot
from review.session_selectors import (
    Progress,
    items_of_reviewer,
    session_disagreements,
    session_progress,
    sessions_for_user,
)

CLOSED_SHOWN = 50  # closed sessions listed on the review page, newest first
EARLIER_TURNS_SHOWN = 50  # turns of the conversation shown before the item's
RETRIEVERS_SHOWN = 5  # retriever spans whose documents the item page reads


@dataclass(frozen=True)
class SessionRow:
    session: ReviewSession
    progress: Progress
    started: bool  # the user labelled, holds or skipped an item of it


def session_rows(user: AbstractBaseUser) -> tuple[list[SessionRow], list[SessionRow]]:
    """The user's open sessions (soonest due first, then newest) and the newest closed ones."""
    sessions = sessions_for_user(user)
    open_ = list(
        sessions.filter(state="open").order_by(
            F("due_at").asc(nulls_last=True), "-created_at", "-pk"
        )
    )
    closed = list(sessions.filter(state="closed").order_by("-updated_at", "-pk")[:CLOSED_SHOWN])
    ids = [s.pk for s in open_ + closed]
    started = set(
        ReviewSlot.objects.filter(session__in=ids, reviewer=user).values_list(
            "session_id", flat=True
        )
    ) | set(
        ReviewSkip.objects.filter(item__session__in=ids, reviewer=user).values_list(
            "item__session_id", flat=True
        )
    )

    def rows(group: list[ReviewSession]) -> list[SessionRow]:
        return [SessionRow(s, session_progress(s, user), s.pk in started) for s in group]

    return rows(open_), rows(closed)


@dataclass(frozen=True)
class Neighbours:
    """Where the item is among the reviewer's own items (those they labelled, hold or skipped)."""

    previous: int | None
    next: int | None
    position: int | None  # 1-based; None when the item is not one of theirs
    count: int


def item_neighbours(session: ReviewSession, user: AbstractBaseUser, item_id: int) -> Neighbours:
    mine = items_of_reviewer(session, user)
    earlier = [i for i in mine if i < item_id]
    later = [i for i in mine if i > item_id]
    return Neighbours(
        previous=earlier[-1] if earlier else None,
        next=later[0] if later else None,
        position=mine.index(item_id) + 1 if item_id in mine else None,
        count=len(mine),
    )


def my_slot_state(item: ReviewItem, user: AbstractBaseUser) -> str | None:
    """open/claimed/done for the user's slot on the item, "skipped", or None."""
    state = (
        ReviewSlot.objects.filter(item=item, reviewer=user).values_list("state", flat=True).first()
    )
    if state is None and ReviewSkip.objects.filter(item=item, reviewer=user).exists():
        return "skipped"
    return state


def conversation_before(turn: RequestLog, user: AbstractBaseUser) -> list[RequestLog]:
    """The turns of the item's conversation before it (oldest first, the last few dozen),
    without their heavy columns."""
    if turn.conversation_id is None:
        return []
    earlier = agent_selectors.request_list(user, conversation_id=str(turn.conversation_id))
    earlier = earlier.filter(created_at__lt=turn.created_at)[:EARLIER_TURNS_SHOWN]
    return list(reversed(earlier))


def _walk(spans: list[OutlineSpan]) -> Iterator[OutlineSpan]:
    for span in spans:
        yield span
        yield from _walk(span.children)


@dataclass
class Retrieved:
    spans: list[Span] = field(default_factory=list)  # retriever spans with their documents
    unavailable: str = ""  # why the trace could not be read, in words


def retrieved_documents(turn: RequestLog) -> Retrieved:
    """The documents the answer's retriever spans returned, read one span at a time from the
    stored trace (its outline says which spans are retrievers), never the whole trace."""
    if not turn.has_trace:
        return Retrieved()
    request_id = turn.databricks_request_id
    try:
        outline = agent_selectors.trace_outline_or_raise(request_id)
        if outline is None:
            return Retrieved()
        found = Retrieved()
        for entry in _walk(outline.roots):
            if entry.span_type.upper() != "RETRIEVER":
                continue
            span = agent_selectors.trace_span_or_raise(request_id, entry.span_id)
            if span is not None and span.documents is not None:
                found.spans.append(span)
            if len(found.spans) >= RETRIEVERS_SHOWN:
                break
        return found
    except tracking.TraceUnavailable as exc:
        return Retrieved(unavailable=tracking.unavailable_message(exc))


def _values(text: dict | None, schemas: list[LabelSchema]) -> list[tuple[str, str]]:
    """(title, value as shown) of each schema; a list's values joined, a missing one empty."""
    out = []
    for schema in schemas:
        value = label_given(text or {}, schema)
        if isinstance(value, list):
            value = ", ".join(value)
        out.append((schema.title, "" if value is None else str(value)))
    return out


@dataclass
class DisagreementRow:
    item: ReviewItem
    differing: list[str]  # titles of the schemas the reviewers answered differently
    labels: list[tuple[str, list[tuple[str, str]]]]  # (reviewer, (schema title, value)s)
    consensus: Rating | None
    settled: list[tuple[str, str]]  # the final label's (schema title, value)s
    settle_fields: list[forms.SchemaField]
    settle_errors: list[str]

    @property
    def form_prefix(self) -> str:  # ids of the settle form's inputs, unique on the page
        return f"settle-{self.item.pk}"


def disagreement_rows(
    session: ReviewSession,
    user: AbstractBaseUser,
    schemas: list[LabelSchema],
    *,
    refused: dict | None = None,
) -> list[DisagreementRow]:
    """session_disagreements as rows of values in the schemas' order, with the settle form of
    each: filled with the final label when settled, or, for the item in `refused`
    ({item id: (posted data, messages)}), with what was posted and why it was refused."""
    refused = refused or {}
    titles = {s.name: s.title for s in schemas}
    rows = []
    for found in session_disagreements(session, user):
        consensus = found.item.consensus
        consensus_text = consensus.text_assessment if consensus else {}
        errors: list[str] = []
        if found.item.pk in refused:
            posted, messages = refused[found.item.pk]
            settle_fields = forms.fields_from_post(schemas, posted)
            errors = forms.errors_in_words(messages, settle_fields)
        else:
            settle_fields = forms.fields_from_label(schemas, consensus_text)
        rows.append(
            DisagreementRow(
                item=found.item,
                differing=[titles.get(n, n) for n in found.schemas],
                labels=[(who, _values(r.text_assessment, schemas)) for who, r in found.labels],
                consensus=consensus,
                settled=_values(consensus_text, schemas) if consensus else [],
                settle_fields=settle_fields,
                settle_errors=errors,
            )
        )
    return rows

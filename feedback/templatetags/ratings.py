"""{% rating_bar turn %} under an answer and {% document_rating turn span doc %} on a retrieved
document, for reviewers; both render the same partials the views return after a save."""

from django import template

from feedback.rating_context import document_rating_context, rating_bar_context
from feedback.selectors import rating_current, ratings_current_in_conversation
from reviewapp import roles

register = template.Library()


def _request_cache(context, name: str) -> dict:
    # On the request, not the render context: each answer is an {% include %}, and includes
    # get a render context of their own.
    request = context["request"]
    caches = request.__dict__.setdefault("_rating_caches", {})
    return caches.setdefault(name, {})


def _current_rating(context, turn, user):
    """The user's current rating of the turn; on a chat page, those of the whole conversation
    are read at the first answer and kept for the others."""
    if turn.conversation_id is None:
        return rating_current(turn, user)
    cache = _request_cache(context, "ratings_by_conversation")
    if turn.conversation_id not in cache:
        cache[turn.conversation_id] = ratings_current_in_conversation(turn.conversation_id, user)
    return cache[turn.conversation_id].get(turn.pk)


@register.inclusion_tag("feedback/_rating_bar.html", takes_context=True)
def rating_bar(context, turn):
    user = context["request"].user
    if not roles.can_review(user) or turn.error:
        return {"hidden": True}
    # Questions are cached on the deployment object; share one object across the page's turns.
    deployments = _request_cache(context, "deployments")
    turn.deployment = deployments.setdefault(turn.deployment_id, turn.deployment)
    return rating_bar_context(turn, user, rating=_current_rating(context, turn, user))


@register.inclusion_tag("feedback/_document_rating.html", takes_context=True)
def document_rating(context, turn, span, document):
    user = context["request"].user
    if not roles.can_review(user) or turn.error:
        return {"hidden": True}
    # One query per span detail, not one per document.
    cache = _request_cache(context, "current_ratings")
    if turn.pk not in cache:
        cache[turn.pk] = rating_current(turn, user)
    return document_rating_context(
        turn, user, span.span_id, document.position, rating=cache[turn.pk]
    )

"""{% rating_bar turn %} under an answer and {% document_rating turn span doc %} on a retrieved
document, for reviewers; both render the same partials the views return after a save."""

from django import template

from feedback.rating_context import document_rating_context, rating_bar_context
from feedback.selectors import rating_current
from reviewapp import roles

register = template.Library()


@register.inclusion_tag("feedback/_rating_bar.html", takes_context=True)
def rating_bar(context, turn):
    user = context["request"].user
    if not roles.can_review(user) or turn.error:
        return {"hidden": True}
    return rating_bar_context(turn, user)


@register.inclusion_tag("feedback/_document_rating.html", takes_context=True)
def document_rating(context, turn, span, document):
    user = context["request"].user
    if not roles.can_review(user) or turn.error:
        return {"hidden": True}
    # One query per span detail, not one per document.
    cache = context.render_context.setdefault("current_ratings", {})
    if turn.pk not in cache:
        cache[turn.pk] = rating_current(turn, user)
    return document_rating_context(
        turn, user, span.span_id, document.position, rating=cache[turn.pk]
    )

import json
from typing import Any

from django import template

register = template.Library()
PREVIEW_CHARS = 4000


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON for display; the template escapes it like any other text."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


@register.filter
def head(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text[:limit]


@register.filter
def longer_than(text: str, limit: int = PREVIEW_CHARS) -> bool:
    return len(text) > limit

from django import template
from django.utils.safestring import SafeString

from reviewapp.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """Render untrusted markdown as sanitized HTML."""
    return render_markdown(text)

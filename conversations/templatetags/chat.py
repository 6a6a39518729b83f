"""Template filters of the chat page."""

from django import template
from django.utils.safestring import SafeString

from ..rendering import markdown_render

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Model output as sanitised HTML (see ``rendering.markdown_render``)."""
    return markdown_render(text or "")

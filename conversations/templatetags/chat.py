"""Template filters of the chat page."""

from django import template
from django.utils.safestring import SafeString, mark_safe

from ..models import Message
from ..rendering import markdown_render

register = template.Library()


@register.filter
def markdown(message: Message) -> SafeString:
    """A reply as sanitised HTML: the copy rendered when it finished, else rendered now."""
    if message.content_html:
        return mark_safe(message.content_html)  # noqa: S308 - markdown_render's sanitised output
    return markdown_render(message.content or "")

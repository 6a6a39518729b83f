"""Template filters of the chat page (and its sign-in pages)."""

from datetime import timedelta

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


@register.filter
def minutes(delta: timedelta) -> str:
    """A duration in whole minutes: "15 minutes", "1 minute"."""
    count = max(1, round(delta.total_seconds() / 60))
    return f"{count} minute{'' if count == 1 else 's'}"

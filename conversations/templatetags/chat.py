"""Template filters and tags of the pages."""

import functools
from datetime import timedelta

from django import template
from django.templatetags.static import static
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from conversations.core.rendering import markdown_render, streaming_render
from conversations.models import Message

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


@register.filter
def streaming_parts(text: str) -> tuple[SafeString, str]:
    """A streaming reply's text so far as (its finished blocks rendered, the open tail)."""
    return streaming_render(text or "")


@register.simple_tag
@functools.cache
def icon(name: str) -> SafeString:
    """An icon of the Lucide sprite in static/icons, drawn in the text colour and hidden from screen readers
    (the control it sits in carries the words); made once per name, as a page of messages draws hundreds."""
    return format_html(
        '<svg class="icon" aria-hidden="true" focusable="false"><use href="{}#{}"></use></svg>',
        static("icons/lucide.svg"),
        name,
    )


@register.filter
def markdown_url(message: Message) -> str:
    """Where a message's Markdown is fetched from (copy, edit): ``message_markdown``'s URL, reversed once
    per script prefix instead of for each message of a page."""
    return _markdown_url_pattern(get_script_prefix()).format(conversation=message.conversation_id, message=message.pk)


@functools.cache
def _markdown_url_pattern(prefix: str) -> str:
    return reverse("message_markdown", args=[1, 2]).replace("/1/", "/{conversation}/").replace("/2.md", "/{message}.md")

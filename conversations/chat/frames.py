"""The chat socket's frames: named partials of the chat page, each under what one websocket frame carries.

Streamed text goes out as its escaped text between its delta partial's two halves, rendered once per
reply instead of a template render per delta (bench/RESULTS.md: the render was 9 % of a streaming worker).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from django.http import HttpRequest
from django.template.loader import get_template
from django.utils.html import escape
from django.utils.safestring import mark_safe

from conversations.models import Message

TEMPLATE = "conversations/chat.html"
# What one frame may carry: websocket clients commonly refuse messages over 1 MiB (Daphne does too).
# A finished message rendered larger is fetched over HTTP instead; streamed text goes in parts
# of TEXT_PART_CHARS, which escaped and UTF-8 encoded (at most 6 bytes a character) stay under it.
FRAME_MAX_BYTES = 512 * 1024
TEXT_PART_CHARS = 64 * 1024
DELTA_TEXT = mark_safe("\x00")  # marks where a delta's text goes in its partial, which has no NUL of its own


class Partial(Protocol):
    """A template as ``get_template`` returns it, whatever the backend."""

    def render(self, context: dict[str, Any] | None = None, request: HttpRequest | None = None) -> str: ...


@functools.cache
def partial(name: str) -> Partial:
    """A partial of the chat page, looked up once: finding it again took 40 % of each delta's render."""
    return get_template(f"{TEMPLATE}#{name}")


def text_frames(
    message_id: int, text: str, *, replace: bool, blocks: str, delta_frames: dict[int, tuple[str, str]]
) -> list[str]:
    """Streamed text for a reply (with ``replace``, its whole text after the formatted ``blocks``), in parts a
    frame carries: the first, beside the blocks, half a part. ``delta_frames``: the socket's rendered halves."""
    frames = []
    first = TEXT_PART_CHARS // 2 if blocks else TEXT_PART_CHARS
    if replace:
        frames.append(partial("snapshot").render({"message_id": message_id, "blocks": blocks, "text": text[:first]}))
        text = text[first:]
    if not text:
        return frames
    before, after = delta_frames.get(message_id) or _delta_frame(message_id, delta_frames)
    frames.extend(
        before + escape(text[at : at + TEXT_PART_CHARS]) + after for at in range(0, len(text), TEXT_PART_CHARS)
    )
    return frames


def _delta_frame(message_id: int, delta_frames: dict[int, tuple[str, str]]) -> tuple[str, str]:
    """The delta partial before and after its text, rendered once per reply: each delta is then its text,
    escaped as the template would, between the two, instead of a render of its own."""
    html = partial("delta").render({"message_id": message_id, "text": DELTA_TEXT})
    before, _, after = html.partition(DELTA_TEXT)
    delta_frames[message_id] = before, after
    return before, after


def message_frame(message: Message, *, conversation_id: int) -> str:
    """A finished message whole, or when that is more than a frame carries, a placeholder that fetches it."""
    html = partial("message-oob").render({"message": message})
    if len(html.encode()) > FRAME_MAX_BYTES:
        html = partial("message-fetch").render({"message": message, "conversation_id": conversation_id})
    return html

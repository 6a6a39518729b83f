"""Reading the provider's stream and publishing what is new to the conversation's sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

from django.conf import settings

from conversations.chat.generation.progress import Progress, publishing_outage
from conversations.chat.generation.saver import text_save_later
from conversations.core.events import ChatBlocks, chat_blocks, chat_delta
from conversations.core.metrics import layer_send_failures
from conversations.core.outages import (
    LAYER_ERRORS,
    retry_delay,
)
from conversations.core.rendering import streaming_blocks_extend
from conversations.ledger.metering.calls import metering_stream


async def reply_stream(
    messages: list[dict[str, Any]], message_id: int, group: str, progress: Progress, layer: Any
) -> None:
    payload = {"messages": messages, "stream_options": {"include_usage": True}, **progress.parameters}
    wake = asyncio.Event()
    publisher = asyncio.create_task(_publish(layer, group, message_id, progress, wake))
    limit = settings.CHAT_REPLY_MAX_CHARS
    try:
        # metering_stream (ledger) returns an async generator (its ``_observed``), typed as an AsyncIterator.
        stream = cast(
            AsyncGenerator[dict[str, Any], None], await metering_stream(metered=progress.metered, payload=payload)
        )
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                if chunk.get("usage"):
                    progress.usage = chunk["usage"]
                if chunk.get("model"):
                    progress.upstream_model = chunk["model"]
                for choice in chunk.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue
                    delta = (choice.get("delta") or {}).get("content") or ""
                    if choice.get("finish_reason"):
                        progress.finish_reason = choice["finish_reason"]
                    if delta:
                        progress.text += delta
                        wake.set()
                        text_save_later(message_id, progress.text)
                if len(progress.text) > limit:  # the provider's stream is closed, its remainder never read
                    progress.text, progress.too_long, progress.finish_reason = progress.text[:limit], True, "length"
                    text_save_later(message_id, progress.text)
                    break
    finally:
        # Never cancelled mid-send (a group send cut short can lose its delta): told to finish instead.
        progress.reading_done.set()
        wake.set()
        await asyncio.wait([publisher])
    publisher.result()


async def _publish(layer: Any, group: str, message_id: int, progress: Progress, wake: asyncio.Event) -> None:
    """Send the sockets what is new each time the reader pauses, until the reader is done and all is sent.

    Pieces that arrive together (one network read, or while this process was busy)
    go out as one delta, so under load each socket gets fewer, larger messages
    instead of falling further behind.
    While the channel layer fails, what is new waits and goes out whole when a send
    works again; once the reply has ended it is not waited for, as its end is saved and
    announced anyway.
    """
    attempt = 0
    while True:
        await wake.wait()
        wake.clear()
        try:
            await _publish_pending(layer, group, message_id, progress)
        except LAYER_ERRORS as exc:
            layer_send_failures.inc()
            publishing_outage.failed(exc)
            if progress.reading_done.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.reading_done.wait(), retry_delay(attempt=attempt))
            attempt += 1
            wake.set()
            continue
        attempt = 0
        if progress.reading_done.is_set() and progress.published == len(progress.text):
            return


async def _publish_pending(layer: Any, group: str, message_id: int, progress: Progress) -> None:
    """Send the text not yet published, with where it starts, so a socket can tell a gap or a repeat.

    At most once per ``STREAM_SAVE_INTERVAL``, when Markdown blocks finished meanwhile,
    the reply so far goes instead as its finished blocks rendered and the open tail.
    """
    start, end = progress.published, len(progress.text)
    if start == end:
        return
    event = _formatted(message_id, progress, end) or chat_delta(
        message_id=message_id, text=progress.text[start:end], start=start
    )
    await layer.group_send(group, event)
    progress.published = end
    publishing_outage.recovered()


def _formatted(message_id: int, progress: Progress, end: int) -> ChatBlocks | None:
    """The ``chat.blocks`` event for ``text[:end]``, if it is time to look and blocks finished since the last."""
    now = time.monotonic()
    if now - progress.formatted_at < settings.STREAM_SAVE_INTERVAL:
        return None
    progress.formatted_at = now
    done, html = streaming_blocks_extend(progress.text[:end], done=progress.blocks_end, html=progress.blocks_html)
    if done == progress.blocks_end:
        return None
    progress.blocks_end, progress.blocks_html = done, html
    return chat_blocks(message_id=message_id, html=html, end=done, text=progress.text[done:end])

"""A generation's control channel: stop and sync requests from any worker, answered while it runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import get_channel_layer

from conversations.chat.generation.progress import Progress, publishing_outage
from conversations.core.events import (
    ChatSnapshot,
    chat_listening,
    chat_snapshot,
    event_publish,
    generation_group,
    generation_stop_event,
    generation_sync_event,
)
from conversations.core.outages import (
    LAYER_ERRORS,
    retry_delay,
)


async def generation_stop(*, message_id: int) -> None:
    """Ask the generation of ``message_id`` to stop, wherever it runs."""
    await event_publish(generation_group(message_id), generation_stop_event())


async def generation_sync(*, message_ids: list[int], reply_to: str) -> None:
    """Ask the generations of ``message_ids`` to send their text so far to ``reply_to``."""
    layer = get_channel_layer()
    for message_id in message_ids:
        await layer.group_send(generation_group(message_id), generation_sync_event(reply_to=reply_to))


@contextlib.asynccontextmanager
async def controls(layer: Any, message_id: int, group: str, progress: Progress) -> AsyncIterator[None]:
    """Listen for stop and sync requests on a channel of this generation's own while it runs.

    The channel joins its group before the reply starts; if the layer is down then, the
    listener joins as soon as it is back.
    """
    channel = await layer.new_channel()
    try:
        await _join(layer, channel, message_id, group)
        joined = True
    except LAYER_ERRORS as exc:
        publishing_outage.failed(exc)
        joined = False
    generation = asyncio.current_task()
    assert generation is not None  # the generation's task runs this
    listener = asyncio.create_task(_listen(layer, channel, message_id, group, progress, generation, joined=joined))
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(*LAYER_ERRORS):  # the membership expires with the group
            await layer.group_discard(generation_group(message_id), channel)


async def _listen(
    layer: Any,
    channel: str,
    message_id: int,
    group: str,
    progress: Progress,
    generation: asyncio.Task[Any],
    *,
    joined: bool,
) -> None:
    """Answer stop and sync requests for one generation until it ends.

    When the channel layer fails (a Redis restart forgets every group), it waits for it
    and joins its group again.
    """
    attempt = 0
    while True:
        try:
            if not joined:
                await _join(layer, channel, message_id, group)
                joined = True
            request = await layer.receive(channel)
        except LAYER_ERRORS as exc:
            publishing_outage.failed(exc)
            joined = False
            await asyncio.sleep(retry_delay(attempt=attempt))
            attempt += 1
            continue
        attempt = 0
        if request["type"] == "generation.stop":
            progress.stop_requested = True
            generation.cancel()
            return
        if request["type"] == "generation.sync":
            with contextlib.suppress(*LAYER_ERRORS):  # the socket asks again when it reconnects
                await layer.send(request["reply_to"], _snapshot(message_id, progress))


async def _join(layer: Any, channel: str, message_id: int, group: str) -> None:
    """Join the generation's group, then tell the conversation's sockets that it listens.

    A socket may have asked for the text while nobody listened: a tab opened or switched to
    the branch while the reply was being set up, or one that reconnected during a channel-layer
    outage. Such a socket still waits for an answer, and asks again.
    """
    await layer.group_add(generation_group(message_id), channel)
    await layer.group_send(group, chat_listening(message_id=message_id))


def _snapshot(message_id: int, progress: Progress) -> ChatSnapshot:
    """The text the sockets were sent so far, for a socket that joins (or rejoins) mid-reply."""
    return chat_snapshot(message_id=message_id, text=progress.text[: progress.published])

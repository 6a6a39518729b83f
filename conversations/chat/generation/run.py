"""Generations as tasks of the process, which outlive the socket or request that started them."""

from __future__ import annotations

import asyncio
import contextvars

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from conversations.chat.attachments.parts import (
    attachments_inline,
)
from conversations.chat.generation.control import controls
from conversations.chat.generation.failures import error_describe
from conversations.chat.generation.finish import reply_finish
from conversations.chat.generation.progress import Progress, logger
from conversations.chat.generation.stream import reply_stream
from conversations.chat.prompt import prompt_build
from conversations.chat.titles import title_start
from conversations.core.errors import (
    ChatwebError,
)
from conversations.core.events import conversation_group
from conversations.ledger.metering.metered import Metered
from conversations.ledger.metering.reserve import metering_for_turn
from conversations.models import Message
from conversations.providers.catalog import base_url_is_local

_running: dict[int, asyncio.Task[None]] = {}


REPLY_TOO_LONG = "This reply reached {limit:,} characters, the longest a chat reply may be here, and was cut there."


def generation_start(*, message_id: int, continuing: bool = False) -> asyncio.Task[None]:
    """Start generating the reply ``message_id`` in the running event loop; ``continuing``: append to
    its text (Continue), the model being sent that text as the start of its answer.

    The task is owned by this module, not by the caller, so it outlives the socket
    or request that started it. It runs in a fresh context so that its database
    calls share the process's one sync thread instead of the caller's request thread.
    """
    task = asyncio.get_running_loop().create_task(
        _generate(message_id, continuing), name=f"generation-{message_id}", context=contextvars.Context()
    )
    _running[message_id] = task
    task.add_done_callback(lambda _: _running.pop(message_id, None))
    return task


def generation_running_ids() -> list[int]:
    """The replies this process is generating now."""
    return list(_running)


async def _generate(message_id: int, continuing: bool = False) -> None:
    layer = get_channel_layer()
    loaded = await sync_to_async(_reply_load)(message_id)
    if loaded is None:  # deleted before it started
        return
    message, metered = loaded
    group = conversation_group(message.conversation_id)
    progress = Progress(metered=metered)
    if continuing:
        progress.text = progress.prefix = message.content
        progress.published = len(message.content)
        progress.earlier_usage = (message.prompt_tokens or 0, message.completion_tokens or 0, message.usage_estimated)
    try:
        async with controls(layer, message_id, group, progress):
            prompt = await sync_to_async(prompt_build)(reply=message, prefix=progress.prefix)
            progress.request, progress.parameters = prompt.messages, prompt.parameters
            sent = await sync_to_async(attachments_inline)(progress.request)  # images as data URLs
            await reply_stream(sent, message_id, group, progress, layer)
        if progress.too_long:
            status, error = Message.Status.STOPPED, REPLY_TOO_LONG.format(limit=settings.CHAT_REPLY_MAX_CHARS)
        else:
            status, error = Message.Status.COMPLETE, ""
    except asyncio.CancelledError:
        if not progress.stop_requested:
            status, error = Message.Status.INTERRUPTED, "The server stopped while this reply was being written."
            await reply_finish(message, group, progress, status, error, layer)
            raise
        task = asyncio.current_task()
        assert task is not None  # this is the generation's task
        task.uncancel()
        status, error = Message.Status.STOPPED, ""
    except ChatwebError as exc:
        logger.warning("Generation of message %s failed: %r", message_id, exc)
        route = progress.metered.route  # the deployment that failed
        local = route is not None and base_url_is_local(route.upstream.base_url)
        status, error = Message.Status.ERROR, error_describe(exc, local=local)
    except Exception:  # noqa: BLE001 - whatever happened, the reply ends in a terminal state
        logger.exception("Generation of message %s crashed", message_id)
        status, error = Message.Status.ERROR, "Something went wrong while writing this reply."
    await reply_finish(message, group, progress, status, error, layer)
    if status == Message.Status.COMPLETE:
        await title_start(message_id=message_id)


def _reply_load(message_id: int) -> tuple[Message, Metered] | None:
    """The reply to generate, with its conversation, model and provider, and its metered completion;
    None when it is gone."""
    message = Message.objects.select_related("conversation__model__provider").filter(pk=message_id).first()
    return (message, metering_for_turn(message=message)) if message is not None else None

"""Generating an assistant reply, independent of any socket.

A generation is an asyncio task of the server process. It reads the provider's
stream through the metering service (which picks the deployment, falls back before
the first content, and settles, stores and logs the completion at the end), publishes
the new text to the conversation's channel-layer group each time its reader pauses (pieces that arrived together go out
as one delta), saves the text so far at most once per ``STREAM_SAVE_INTERVAL``, and
always ends the message in a terminal state.

Each running generation listens on a channel of its own (joined to the group
``generation_group(message_id)``) for two requests from any process: ``stop``, and
``sync``, which answers a newly connected socket with the text published so far.

Events published to ``conversation_group(conversation_id)``: ``chat.turn`` (new
messages), ``chat.delta`` (text and where it starts in the reply), ``chat.blocks`` (the
reply so far as its finished Markdown blocks, rendered, and the open tail as text),
``chat.snapshot`` (the text so far), ``chat.listening`` (its generation answers sync requests now:
a socket that asked before asks again), ``chat.done`` (final state), ``chat.branch`` (the current path
changed: a version chosen, an edit, a branch deleted), ``chat.continue`` (a reply streams again).

A channel-layer outage (Redis restarting) never changes how a reply ends: deltas are
retried until they go out, the control listener rejoins its group and the sockets
that came back ask it again for the text so far, and the end is saved whether or not it
could be announced. A database outage holds the unsaved text until it can be saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chatweb.metrics import layer_send_failures

from ..errors import ChatwebError, DeploymentsExhausted, ModelUnavailable, UpstreamFailed
from ..models import Message, UsageRecord
from ..outages import DATABASE_ERRORS, LAYER_ERRORS, Outage, database_connection_reset, retry_delay
from ..rendering import markdown_render, streaming_blocks_extend
from ..selectors import message_path_ids
from .attachments import attachments_inline, message_model_content
from .chat_settings import chat_request_parameters, chat_system_messages
from .completions import UpstreamConnectionError, UpstreamTimeout
from .metering import (
    TURN_STATUS,
    Metered,
    metering_for_turn,
    metering_log,
    metering_settle,
    metering_store,
    metering_stream,
)
from .providers import base_url_is_local
from .stored import stored_completion_build_turn
from .titles import title_start

logger = logging.getLogger(__name__)

_running: dict[int, asyncio.Task] = {}
_unsaved: dict[int, str] = {}  # reply id -> its text, not yet saved
_saver: asyncio.Task | None = None
_saving = Outage(logger, "Saving streaming replies", database=True)
_publishing = Outage(logger, "Publishing replies to the channel layer")

REPLY_TOO_LONG = "This reply reached {limit:,} characters, the longest a chat reply may be here, and was cut there."


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def generation_group(message_id: int) -> str:
    return f"generation-{message_id}"


@dataclass
class _Progress:
    """What a generation has produced so far; shared with its control listener."""

    text: str = ""
    prefix: str = ""  # a continued reply's text before this call, which ``text`` starts with
    earlier_usage: tuple[int, int, bool] = (0, 0, False)  # and its (prompt, completion, estimated) tokens
    published: int = 0  # how much of text the sockets were sent
    finish_reason: str = ""
    usage: dict[str, Any] | None = None
    stop_requested: bool = False
    too_long: bool = False  # cut at CHAT_REPLY_MAX_CHARS
    reading_done: asyncio.Event = field(default_factory=asyncio.Event)  # the provider's stream ended, however
    upstream_model: str = ""
    request: list[dict[str, str]] | None = None  # the messages sent to the provider
    parameters: dict[str, Any] = field(default_factory=dict)  # and the chat's parameters sent with them
    metered: Metered | None = None  # the completion: its reservation, route and attempts
    blocks_end: int = 0  # how much of text the sockets were sent as finished Markdown blocks
    blocks_html: str = ""  # those blocks, rendered and sanitised
    formatted_at: float = field(default_factory=time.monotonic)  # when finished blocks were last looked for

    @property
    def new_text(self) -> str:
        """What this call wrote: all of ``text`` but a continued reply's earlier part."""
        return self.text[len(self.prefix):]


def generation_start(*, message_id: int, continuing: bool = False) -> asyncio.Task:
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


async def generation_stop(*, message_id: int) -> None:
    """Ask the generation of ``message_id`` to stop, wherever it runs."""
    await get_channel_layer().group_send(generation_group(message_id), {"type": "generation.stop"})


async def generation_sync(*, message_ids: list[int], reply_to: str) -> None:
    """Ask the generations of ``message_ids`` to send their text so far to ``reply_to``."""
    layer = get_channel_layer()
    for message_id in message_ids:
        await layer.group_send(generation_group(message_id), {"type": "generation.sync", "reply_to": reply_to})


async def turn_announce(
    *, conversation_id: int, message_ids: list[int], title: str, replaces: int | None = None
) -> None:
    """Tell every socket on the conversation that these messages were added."""
    await get_channel_layer().group_send(
        conversation_group(conversation_id),
        {"type": "chat.turn", "message_ids": message_ids, "title": title, "replaces": replaces},
    )


async def branch_announce(*, conversation_id: int, anchor: int | None = None) -> None:
    """Tell every socket on the conversation that its current path changed; ``anchor``: the message
    the change is about, which a tab keeps in view."""
    await get_channel_layer().group_send(
        conversation_group(conversation_id), {"type": "chat.branch", "anchor": anchor}
    )


async def reply_continue_announce(*, conversation_id: int, message_id: int) -> None:
    """Tell every socket on the conversation that the reply ``message_id`` streams again (Continue)."""
    await get_channel_layer().group_send(
        conversation_group(conversation_id), {"type": "chat.continue", "message_id": message_id}
    )


async def _generate(message_id: int, continuing: bool = False) -> None:
    layer = get_channel_layer()
    message, metered = await sync_to_async(_reply_load)(message_id)
    if message is None:  # deleted before it started
        return
    group = conversation_group(message.conversation_id)
    progress = _Progress(metered=metered)
    if continuing:
        progress.text = progress.prefix = message.content
        progress.published = len(message.content)
        progress.earlier_usage = (message.prompt_tokens or 0, message.completion_tokens or 0, message.usage_estimated)
    try:
        async with _controls(layer, message_id, group, progress):
            progress.request, progress.parameters = await sync_to_async(_request_for)(message, progress.prefix)
            sent = await sync_to_async(attachments_inline)(progress.request)  # images as data URLs
            await _stream(sent, message_id, group, progress, layer)
        if progress.too_long:
            status, error = Message.Status.STOPPED, REPLY_TOO_LONG.format(limit=settings.CHAT_REPLY_MAX_CHARS)
        else:
            status, error = Message.Status.COMPLETE, ""
    except asyncio.CancelledError:
        if not progress.stop_requested:
            status, error = Message.Status.INTERRUPTED, "The server stopped while this reply was being written."
            await _finish(message, group, progress, status, error, layer)
            raise
        asyncio.current_task().uncancel()
        status, error = Message.Status.STOPPED, ""
    except ChatwebError as exc:
        logger.warning("Generation of message %s failed: %r", message_id, exc)
        route = progress.metered.route if progress.metered else None  # the deployment that failed
        local = route is not None and base_url_is_local(route.upstream.base_url)
        status, error = Message.Status.ERROR, error_describe(exc, local=local)
    except Exception:
        logger.exception("Generation of message %s crashed", message_id)
        status, error = Message.Status.ERROR, "Something went wrong while writing this reply."
    await _finish(message, group, progress, status, error, layer)
    if status == Message.Status.COMPLETE:
        await title_start(message_id=message_id)


def _reply_load(message_id: int) -> tuple[Message | None, Metered | None]:
    """The reply to generate, with its conversation, model and provider, and its metered completion."""
    message = Message.objects.select_related("conversation__model__provider").filter(pk=message_id).first()
    return message, metering_for_turn(message=message) if message is not None else None


@contextlib.asynccontextmanager
async def _controls(layer: Any, message_id: int, group: str, progress: _Progress) -> AsyncIterator[None]:
    """Listen for stop and sync requests on a channel of this generation's own while it runs.

    The channel joins its group before the reply starts; if the layer is down then, the
    listener joins as soon as it is back.
    """
    channel = await layer.new_channel()
    try:
        await _join(layer, channel, message_id, group)
        joined = True
    except LAYER_ERRORS as exc:
        _publishing.failed(exc)
        joined = False
    listener = asyncio.create_task(
        _listen(layer, channel, message_id, group, progress, asyncio.current_task(), joined=joined)
    )
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(*LAYER_ERRORS):  # the membership expires with the group
            await layer.group_discard(generation_group(message_id), channel)


async def _stream(messages: list[dict[str, Any]], message_id: int, group: str, progress: _Progress, layer: Any) -> None:
    payload = {"messages": messages, "stream_options": {"include_usage": True}, **progress.parameters}
    wake = asyncio.Event()
    publisher = asyncio.create_task(_publish(layer, group, message_id, progress, wake))
    limit = settings.CHAT_REPLY_MAX_CHARS
    try:
        async with contextlib.aclosing(await metering_stream(metered=progress.metered, payload=payload)) as chunks:
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
                        _save_later(message_id, progress.text)
                if len(progress.text) > limit:  # the provider's stream is closed, its remainder never read
                    progress.text, progress.too_long, progress.finish_reason = progress.text[:limit], True, "length"
                    _save_later(message_id, progress.text)
                    break
    finally:
        # Never cancelled mid-send (a group send cut short can lose its delta): told to finish instead.
        progress.reading_done.set()
        wake.set()
        await asyncio.wait([publisher])
    publisher.result()


async def _publish(layer: Any, group: str, message_id: int, progress: _Progress, wake: asyncio.Event) -> None:
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
            _publishing.failed(exc)
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


async def _publish_pending(layer: Any, group: str, message_id: int, progress: _Progress) -> None:
    """Send the text not yet published, with where it starts, so a socket can tell a gap or a repeat.

    At most once per ``STREAM_SAVE_INTERVAL``, when Markdown blocks finished meanwhile,
    the reply so far goes instead as its finished blocks rendered and the open tail.
    """
    start, end = progress.published, len(progress.text)
    if start == end:
        return
    event = _formatted(message_id, progress, end) or {
        "type": "chat.delta", "message_id": message_id, "text": progress.text[start:end], "start": start
    }
    await layer.group_send(group, event)
    progress.published = end
    _publishing.recovered()


def _formatted(message_id: int, progress: _Progress, end: int) -> dict[str, Any] | None:
    """The ``chat.blocks`` event for ``text[:end]``, if it is time to look and blocks finished since the last."""
    now = time.monotonic()
    if now - progress.formatted_at < settings.STREAM_SAVE_INTERVAL:
        return None
    progress.formatted_at = now
    done, html = streaming_blocks_extend(progress.text[:end], done=progress.blocks_end, html=progress.blocks_html)
    if done == progress.blocks_end:
        return None
    progress.blocks_end, progress.blocks_html = done, html
    return {"type": "chat.blocks", "message_id": message_id, "html": html, "end": done, "text": progress.text[done:end]}


def _save_later(message_id: int, text: str) -> None:
    """Have the reply's text saved with the next batch (the saver starts with the first reply that grows)."""
    global _saver
    _unsaved[message_id] = text
    loop = asyncio.get_running_loop()
    if _saver is None or _saver.done() or _saver.get_loop() is not loop:
        _saver = loop.create_task(_save_texts_loop(), name="generation-saver", context=contextvars.Context())


async def _save_texts_loop() -> None:
    """Every ``STREAM_SAVE_INTERVAL``, save the text of each reply that grew, all in one statement.

    One batch per interval instead of an UPDATE per reply keeps the process's one
    database thread free at a thousand streams, and no reader ever waits on a save.
    Texts a failed save held go back in line, unless their reply grew meanwhile.
    """
    while _unsaved:
        await asyncio.sleep(settings.STREAM_SAVE_INTERVAL)
        texts = dict(_unsaved)
        _unsaved.clear()
        if not texts:  # the replies ended meanwhile, saving their own text
            continue
        try:
            await sync_to_async(_texts_save)(texts)
        except DATABASE_ERRORS as exc:
            _saving.failed(exc)
            for message_id, text in texts.items():
                _unsaved.setdefault(message_id, text)
            await database_connection_reset()
        except Exception:  # the texts stay in memory and are saved whole when the replies end
            logger.exception("Saving %d streaming replies failed", len(texts))
        else:
            _saving.recovered()


def _texts_save(texts: dict[int, str]) -> None:
    """Save replies' texts so far; a reply that has ended meanwhile keeps its final text.

    One prepared UPDATE run for every reply: the ORM's ``bulk_update`` built a CASE expression
    over all of them each time, which cost the worker more than the saving itself.
    """
    now = timezone.now()
    table, content, updated_at, status, pk = (
        Message._meta.db_table,
        *(Message._meta.get_field(name).column for name in ("content", "updated_at", "status", "id")),
    )
    updated = Message._meta.get_field("updated_at").get_db_prep_value(now, connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            f'UPDATE "{table}" SET "{content}" = %s, "{updated_at}" = %s WHERE "{pk}" = %s AND "{status}" = %s',
            [(text, updated, message_id, Message.Status.STREAMING.value) for message_id, text in texts.items()],
        )


async def _listen(
    layer: Any,
    channel: str,
    message_id: int,
    group: str,
    progress: _Progress,
    generation: asyncio.Task,
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
            _publishing.failed(exc)
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
    await layer.group_send(group, {"type": "chat.listening", "message_id": message_id})


def _snapshot(message_id: int, progress: _Progress) -> dict[str, Any]:
    """The text the sockets were sent so far, for a socket that joins (or rejoins) mid-reply."""
    return {"type": "chat.snapshot", "message_id": message_id, "text": progress.text[: progress.published]}


async def _finish(
    message: Message, group: str, progress: _Progress, status: str, error: str, layer: Any
) -> None:
    """Save the terminal state with all text so far, settle its usage, keep the turn for review, tell every socket.

    During a database outage the end waits in memory, retried, until it is saved; a
    channel-layer outage only means the sockets learn it when they reconnect.
    """
    _unsaved.pop(message.pk, None)
    latency_ms = progress.metered.latency_ms
    html = markdown_render(progress.text)
    attempt = 0
    while True:
        try:
            prompt_tokens, completion_tokens = await sync_to_async(_finish_save)(
                message, progress, status, error, html, latency_ms
            )
            _saving.recovered()
            break
        except DATABASE_ERRORS as exc:
            _saving.failed(exc)
            await database_connection_reset()
            await asyncio.sleep(retry_delay(attempt=attempt))
            attempt += 1
    metering_log(
        metered=progress.metered, status=TURN_STATUS[status], prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    try:
        await layer.group_send(group, {"type": "chat.done", "message_id": message.pk})
    except LAYER_ERRORS as exc:
        layer_send_failures.inc()
        _publishing.failed(exc)


def _finish_save(
    message: Message, progress: _Progress, status: str, error: str, html: str, latency_ms: int
) -> tuple[int | None, int | None]:
    """The reply's final state, its settled usage and its stored completion, in one transaction.

    Returns this call's (prompt tokens, completion tokens); a continued reply's own counts add
    its calls up, while each call's usage record and stored completion are that call's alone.
    A reply deleted meanwhile (its conversation was) still has its usage settled, and is not
    kept for review.
    """
    with transaction.atomic():
        prompt_tokens, completion_tokens, estimated = _settle(progress)
        earlier_prompt, earlier_completion, earlier_estimated = progress.earlier_usage
        now = timezone.now()
        saved = Message.objects.filter(pk=message.pk).update(
            content=progress.text,
            content_html=html,
            status=status,
            error=error,
            finish_reason=progress.finish_reason,
            prompt_tokens=_added(earlier_prompt, prompt_tokens),
            completion_tokens=_added(earlier_completion, completion_tokens),
            usage_estimated=estimated or earlier_estimated,
            **({"upstream_model": progress.upstream_model} if progress.upstream_model else {}),
            finished_at=now,
            updated_at=now,
        )
        if saved and progress.request is not None:
            stored = stored_completion_build_turn(
                message=message,
                messages=progress.request,
                parameters=progress.parameters,
                text=progress.new_text,
                finish_reason=progress.finish_reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                status=TURN_STATUS[status],
                latency_ms=latency_ms,
            )
            metering_store(metered=progress.metered, stored=stored)
            if progress.metered.record is not None:
                UsageRecord.objects.filter(pk=progress.metered.record.pk).update(stored_completion=stored)
    return prompt_tokens, completion_tokens


def _added(earlier: int, now: int | None) -> int | None:
    """A continued reply's count over its calls (None when neither counted anything)."""
    return earlier + now if now is not None else (earlier or None)


def _settle(progress: _Progress) -> tuple[int | None, int | None, bool]:
    """Settle the reply's reserved usage: the provider's counts, else counted here and marked estimated.

    Returns (prompt tokens, completion tokens, estimated); (None, None, False) when
    nothing reached the provider's output (it failed before answering).
    """
    answered = bool(progress.new_text or progress.usage)
    record = metering_settle(
        metered=progress.metered, usage=progress.usage, text=progress.new_text, messages=progress.request or []
    )
    if record is None or not answered:
        return None, None, False
    return record.prompt_tokens, record.completion_tokens, record.estimated


def _request_for(message: Message, prefix: str = "") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages (the chat's system prompt, then its history) and the parameters that produce ``message``;
    continuing it, its text so far (``prefix``) ends them, as the assistant's answer to go on with."""
    conversation = message.conversation
    messages = [*chat_system_messages(settings=conversation), *_history(message)]
    if prefix:
        messages.append({"role": "assistant", "content": prefix})
    return messages, chat_request_parameters(settings=conversation, model=conversation.model)


def _history(message: Message) -> list[dict[str, Any]]:
    """The path from the conversation's first message down to the one ``message`` answers: what the model is
    sent, with its attachments (images as references to their files: ``attachments_inline`` makes them data
    URLs to send)."""
    model = message.conversation.model
    history = (
        Message.objects.filter(pk__in=message_path_ids(conversation=message.conversation, leaf_id=message.parent_id))
        .exclude(content="", attachments=None)
        .order_by("created_at", "id")
        .prefetch_related("attachments")
    )
    images = model is not None and model.accepts_images
    return [{"role": m.role, "content": message_model_content(message=m, images=images)} for m in history]


def reply_interrupt_save(*, message: Message, error: str) -> None:
    """End a reply whose generation died, as ``interrupted``, with the text it last saved.

    Its usage is settled as estimated from that text, and the turn is stored for review
    like any other, so the reservation does not hold the worst case forever. ``message``
    comes with its conversation, model and provider.
    """
    request, parameters = _request_for(message)
    progress = _Progress(
        text=message.content, request=request, parameters=parameters, metered=metering_for_turn(message=message)
    )
    latency_ms = round((timezone.now() - message.created_at).total_seconds() * 1000)
    _finish_save(message, progress, Message.Status.INTERRUPTED, error, markdown_render(message.content), latency_ms)


def error_describe(exc: ChatwebError, *, local: bool = False) -> str:
    """A sentence a person understands, for a failed reply; ``local``: the bundled model's, which restarts by itself."""
    if isinstance(exc, ModelUnavailable):
        return exc.message
    if isinstance(exc, DeploymentsExhausted):
        return "Every provider of this model failed just now. Your message is kept; regenerate to try again."
    if not isinstance(exc, UpstreamFailed):
        return exc.message
    if isinstance(exc, UpstreamConnectionError) and local:
        if exc.answered:
            return "The local model stopped while answering. It is restarting; regenerate to try again."
        return "The local model is not running right now; it restarts by itself. Regenerate in a few seconds."
    if isinstance(exc, UpstreamTimeout):
        return f"The model took too long to answer. {exc.message}"
    if isinstance(exc, UpstreamConnectionError):
        return f"{exc.message} Check that the model's server is running."
    if exc.status in (401, 403):
        return f"The provider refused chatweb's API key ({exc.message}). An admin needs to update the provider's key."
    if exc.status == 429:
        return f"The provider is rate limiting requests ({exc.message}). Wait a moment and regenerate."
    if exc.status == 404:
        return f"The provider does not know this model ({exc.message})."
    if exc.status and exc.status < 500:
        return f"The provider rejected the request: {exc.message}"
    return f"The provider failed: {exc.message}"

"""A reply's end: its terminal state, settled usage and stored completion, saved together."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from conversations.chat.generation.progress import (
    Progress,
    publishing_outage,
    saving_outage,
)
from conversations.chat.generation.saver import unsaved_discard
from conversations.chat.prompt import prompt_build
from conversations.core.events import chat_done
from conversations.core.metrics import layer_send_failures
from conversations.core.outages import (
    DATABASE_ERRORS,
    LAYER_ERRORS,
    database_connection_reset,
    retry_delay,
)
from conversations.core.rendering import markdown_render
from conversations.ledger.metering.log import metering_log
from conversations.ledger.metering.metered import TURN_STATUS
from conversations.ledger.metering.reserve import metering_for_turn
from conversations.ledger.metering.settle import metering_settle, metering_store
from conversations.ledger.stored import stored_completion_build_turn
from conversations.models import Message, UsageRecord


async def reply_finish(
    message: Message, group: str, progress: Progress, status: Message.Status, error: str, layer: Any
) -> None:
    """Save the terminal state with all text so far, settle its usage, keep the turn for review, tell every socket.

    During a database outage the end waits in memory, retried, until it is saved; a
    channel-layer outage only means the sockets learn it when they reconnect.
    """
    unsaved_discard(message_id=message.pk)
    latency_ms = progress.metered.latency_ms
    html = markdown_render(progress.text)
    attempt = 0
    while True:
        try:
            prompt_tokens, completion_tokens = await sync_to_async(reply_finish_save)(
                message, progress, status, error, html, latency_ms
            )
            saving_outage.recovered()
            break
        except DATABASE_ERRORS as exc:
            saving_outage.failed(exc)
            await database_connection_reset()
            await asyncio.sleep(retry_delay(attempt=attempt))
            attempt += 1
    metering_log(
        metered=progress.metered,
        status=TURN_STATUS[status],
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    try:
        await layer.group_send(group, chat_done(message_id=message.pk))
    except LAYER_ERRORS as exc:
        layer_send_failures.inc()
        publishing_outage.failed(exc)


def reply_finish_save(
    message: Message, progress: Progress, status: Message.Status, error: str, html: str, latency_ms: int
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


def _settle(progress: Progress) -> tuple[int | None, int | None, bool]:
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


def reply_interrupt_save(*, message: Message, error: str) -> None:
    """End a reply whose generation died, as ``interrupted``, with the text it last saved.

    Its usage is settled as estimated from that text, and the turn is stored for review
    like any other, so the reservation does not hold the worst case forever. ``message``
    comes with its conversation, model and provider.
    """
    prompt = prompt_build(reply=message)
    progress = Progress(
        text=message.content,
        request=prompt.messages,
        parameters=prompt.parameters,
        metered=metering_for_turn(message=message),
    )
    latency_ms = round((timezone.now() - message.created_at).total_seconds() * 1000)
    reply_finish_save(
        message, progress, Message.Status.INTERRUPTED, error, markdown_render(message.content), latency_ms
    )

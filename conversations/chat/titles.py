"""A short title written by the conversation's model after its first reply, when the site setting
``generate_titles`` is on. It runs as a task of its own once the reply is saved, so it never delays
the reply; its tokens are reserved and settled as the user's usage like any completion. A title the
user changed meanwhile is kept, and a failure keeps the first-message title without a word.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from conversations.core import events
from conversations.core.errors import ChatwebError
from conversations.core.events import conversation_group, event_publish
from conversations.ledger.metering.calls import metering_create
from conversations.ledger.metering.log import metering_log
from conversations.ledger.metering.metered import Metered
from conversations.ledger.metering.settle import metering_settle
from conversations.ledger.usage import usage_reserve
from conversations.models import (
    ChatModel,
    Conversation,
    Message,
    SiteSettings,
    StoredCompletion,
    UsageRecord,
)
from conversations.providers.tokens import messages_tokens_guess

logger = logging.getLogger(__name__)

PROMPT = (
    "Write a title of at most six words for the conversation below, in its language. "
    "Answer with the title only: no quotes, no punctuation at the end."
)
TITLE_TOKENS = 24
TITLE_CHARS = 60  # a title from the first message, or from the model
EXCERPT_CHARS = 2000
_tasks: set[asyncio.Task[str | None]] = set()


@dataclass
class _Job:
    conversation_id: int
    title: str  # the title it has now: replaced only if it is still this
    model: ChatModel
    metered: Metered
    record: UsageRecord  # the title's reservation, ``metered.record``
    messages: list[dict[str, str]]


def title_from_message(content: str) -> str:
    """A new conversation's title: its first message on one line, cut at ``TITLE_CHARS``."""
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


async def title_start(*, message_id: int) -> None:
    """After a reply finished: when it was its conversation's first and the setting is on, reserve the
    title's usage and ask the model for it in a task of its own."""
    try:
        job = await sync_to_async(_job)(message_id=message_id)
    except ChatwebError:  # over budget or rate limit: the first-message title stays
        return
    if job is None:
        return
    task = asyncio.get_running_loop().create_task(title_generate(job=job))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def title_generate(*, job: _Job) -> str | None:
    """Ask the model for a title and set it; returns the new title, or None when none was set."""
    try:
        response = await metering_create(
            metered=job.metered, payload={"messages": job.messages, "max_tokens": TITLE_TOKENS}
        )
    except ChatwebError as exc:
        logger.info("No title for conversation %s: %r", job.conversation_id, exc)
        response = {}
    title = title_clean(_reply_text(response))
    saved = await sync_to_async(_save)(job=job, response=response, title=title)
    metering_log(
        metered=job.metered,
        status="completed" if title else "error",
        prompt_tokens=job.record.prompt_tokens,
        completion_tokens=job.record.completion_tokens,
    )
    if not saved:
        return None
    await event_publish(conversation_group(job.conversation_id), events.chat_turn(message_ids=[], title=title))
    return title


def _job(*, message_id: int) -> _Job | None:
    """What to ask, when this reply is its conversation's first and the setting is on; its usage reserved."""
    if not SiteSettings.objects.filter(pk=1, generate_titles=True).exists():
        return None
    reply = (
        Message.objects.select_related("conversation__user", "conversation__model__provider")
        .filter(pk=message_id, role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE)
        .first()
    )
    if reply is None:
        return None
    conversation = reply.conversation
    model = conversation.model
    if model is None:
        return None
    if conversation.messages.filter(role=Message.Role.ASSISTANT).exclude(pk=reply.pk).exists():
        return None
    question = ""
    if reply.parent_id is not None:  # a reply always answers a message
        question = conversation.messages.filter(pk=reply.parent_id).values_list("content", flat=True).first() or ""
    if conversation.title != title_from_message(question):  # renamed already: the user's title stays
        return None
    messages = [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": f"User: {question[:EXCERPT_CHARS]}\n\nAssistant: {reply.content[:EXCERPT_CHARS]}"},
    ]
    record = usage_reserve(
        user=conversation.user,
        model=model.name,
        provider=model.provider.name,
        prompt_tokens=messages_tokens_guess(messages),
        max_output_tokens=TITLE_TOKENS,
    )
    metered = Metered(
        model=model, name=model.name, user_id=conversation.user_id, source=StoredCompletion.Source.CHAT, record=record
    )
    return _Job(
        conversation_id=conversation.pk,
        title=conversation.title,
        model=model,
        metered=metered,
        record=record,
        messages=messages,
    )


def _reply_text(response: dict[str, Any]) -> str:
    choices = response.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def title_clean(text: str) -> str:
    """The model's answer as a title: its first line, without quotes or a final full stop, at most TITLE_CHARS."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line.removeprefix("Title:").strip().strip("\"'“”‘’*#` ").rstrip(".")
    line = " ".join(line.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _save(*, job: _Job, response: dict[str, Any], title: str) -> bool:
    """Settle the call's usage and set the title if the user has not renamed the conversation meanwhile."""
    with transaction.atomic():
        metering_settle(
            metered=job.metered,
            usage=response.get("usage"),
            text=_reply_text(response),
            messages=job.messages if response else [],
        )
        if not title:
            return False
        return bool(Conversation.objects.filter(pk=job.conversation_id, title=job.title).update(title=title))

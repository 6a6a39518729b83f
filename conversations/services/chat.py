"""Conversations and their messages: what a user does in the chat UI."""

from __future__ import annotations

from datetime import timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..errors import NotFound, QuotaExceeded
from ..models import ChatModel, Conversation, Message
from ..selectors import chat_model_default, chat_model_list, message_path_ids
from .generation import generation_start, generation_stop, generation_sync, reply_interrupt_save, turn_announce
from .metering import metering_reserve_turn

MAX_MESSAGE_CHARS = 100_000
TITLE_CHARS = 60


@transaction.atomic
def conversation_start(
    *, user: AbstractBaseUser, content: str, model_name: str | None = None
) -> tuple[Message, Message]:
    """A new conversation holding the user's first message and its reply to generate."""
    conversation = Conversation.objects.create(user=user, model=chat_model_resolve(model_name=model_name))
    return message_send(conversation=conversation, content=content)


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())[:200]
    if not title:
        raise ValidationError("A title cannot be empty.")
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete the conversation, stopping any reply still being written for it."""
    streaming = list(conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True))
    conversation.delete()
    for message_id in streaming:
        async_to_sync(generation_stop)(message_id=message_id)


def chat_model_resolve(*, model_name: str | None) -> ChatModel:
    """The enabled model of that name, or the default one when no name is given."""
    if model_name:
        model = chat_model_list().filter(name=model_name).first()
        if model is None:
            raise ValidationError(f"The model “{model_name}” is not available.")
        return model
    model = chat_model_default()
    if model is None:
        raise ValidationError("No model is set up yet. An admin can add a provider in the admin.")
    return model


@transaction.atomic
def message_send(
    *, conversation: Conversation, content: str, model_name: str | None = None
) -> tuple[Message, Message]:
    """Save the user's message and an empty assistant reply in state ``streaming``.

    The caller starts the generation for the returned assistant message.
    """
    content = content.strip()
    if not content:
        raise ValidationError("Type a message first.")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ValidationError(
            f"That message is {len(content):,} characters; the limit is {MAX_MESSAGE_CHARS:,}."
        )
    conversation = _conversation_locked(conversation)
    _ensure_idle(conversation)
    if model_name or conversation.model is None:
        conversation.model = chat_model_resolve(model_name=model_name)
    if conversation.current_leaf_id is None:
        conversation.title = _title_from(content)
    user_message = Message.objects.create(
        conversation=conversation, parent_id=conversation.current_leaf_id, role=Message.Role.USER, content=content
    )
    return user_message, _assistant_reply_create(conversation=conversation, parent=user_message)


@transaction.atomic
def message_regenerate(*, conversation: Conversation) -> tuple[int, Message]:
    """A new reply to the same message as the current one; returns (the old one's id, the new one).

    The old reply stays, as a sibling of the new one off the current path, with its usage
    record and stored turn.
    """
    conversation = _conversation_locked(conversation)
    _ensure_idle(conversation)
    last = conversation.current_leaf
    if last is None or last.role != Message.Role.ASSISTANT:
        raise ValidationError("There is no reply to regenerate.")
    if conversation.model is None:
        conversation.model = chat_model_resolve(model_name=None)
    return last.pk, _assistant_reply_create(conversation=conversation, parent=last.parent)


@transaction.atomic
def conversation_branch_select(*, conversation: Conversation, message: Message) -> Conversation:
    """Show the branch through ``message``: the current leaf becomes the newest message below it.

    The newest descendant is always a leaf, since a message is written after the one it follows.
    The conversation's place in the list (``updated_at``) does not move.
    """
    if message.conversation_id != conversation.pk:
        raise NotFound("No such message in this conversation.")
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in conversation.messages.values_list("pk", "parent_id"):
        children.setdefault(parent_id, []).append(pk)
    newest, below = message.pk, [message.pk]
    while below:
        node = below.pop()
        newest = max(newest, node)
        below.extend(children.get(node, ()))
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=newest)
    conversation.current_leaf_id = newest
    return conversation


def messages_interrupt_orphans(*, stale_after: timedelta | None = None) -> list[tuple[int, int]]:
    """End replies whose generating process died as ``interrupted``; returns (message, conversation) ids.

    Each keeps the text it last saved, has its usage settled as estimated from that
    text and its turn stored. At start-up of a single process every ``streaming`` reply
    is an orphan. With several workers, a reply is an orphan once its heartbeat
    (``updated_at``) is older than ``stale_after``: running generations refresh it every
    few seconds.
    """
    orphans = Message.objects.filter(status=Message.Status.STREAMING)
    if stale_after is not None:
        orphans = orphans.filter(updated_at__lt=timezone.now() - stale_after)
    with transaction.atomic():
        found = list(orphans.select_for_update(of=("self",)).select_related("conversation__model__provider"))
        for message in found:
            reply_interrupt_save(
                message=message,
                error="The server writing this reply stopped. The text so far is kept; regenerate to try again.",
            )
    return [(message.pk, message.conversation_id) for message in found]


def _conversation_locked(conversation: Conversation) -> Conversation:
    """The conversation re-read and locked for this transaction, with the user, model and provider a reply needs."""
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("user", "model__provider")
        .get(pk=conversation.pk)
    )


def _assistant_reply_create(*, conversation: Conversation, parent: Message | None) -> Message:
    """The reply to ``parent`` to generate, made the current leaf, with its usage reserved against the
    user's budget and rate limits."""
    model = conversation.model
    assert model is not None
    reply = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model_name=model.name,
        upstream_model=model.upstream_model,
    )
    conversation.current_leaf = reply
    conversation.save(update_fields=["model", "title", "current_leaf", "updated_at"])
    history = Message.objects.filter(
        pk__in=message_path_ids(conversation=conversation, leaf_id=reply.parent_id)
    ).values("content")
    try:
        metering_reserve_turn(user=conversation.user, model=model, reply=reply, history=list(history))
    except QuotaExceeded as exc:
        raise ValidationError(exc.message) from exc
    return reply


def _ensure_idle(conversation: Conversation) -> None:
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise ValidationError("Wait for the current reply to finish, or stop it.")


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


async def chat_send(*, conversation: Conversation, content: str, model_name: str | None = None) -> Message:
    """Send the user's message and start the reply; every open tab is told."""
    user_message, reply = await sync_to_async(message_send)(
        conversation=conversation, content=content, model_name=model_name
    )
    try:
        await turn_announce(
            conversation_id=conversation.pk,
            message_ids=[user_message.pk, reply.pk],
            title=reply.conversation.title,
        )
    finally:  # a reply saved as streaming is always generated, announced or not
        generation_start(message_id=reply.pk)
    return reply


async def chat_start(*, user: AbstractBaseUser, content: str, model_name: str | None = None) -> Conversation:
    """Start a conversation with its first message and begin the reply."""
    _, reply = await sync_to_async(conversation_start)(user=user, content=content, model_name=model_name)
    generation_start(message_id=reply.pk)
    return reply.conversation


async def chat_regenerate(*, conversation: Conversation) -> Message:
    old_id, reply = await sync_to_async(message_regenerate)(conversation=conversation)
    try:
        await turn_announce(
            conversation_id=conversation.pk,
            message_ids=[reply.pk],
            title=reply.conversation.title,
            replaces=old_id,
        )
    finally:
        generation_start(message_id=reply.pk)
    return reply


async def chat_stop(*, conversation: Conversation) -> None:
    """Stop every reply of the conversation still being written, in whichever process."""
    async for message_id in _streaming_ids(conversation_id=conversation.pk):
        await generation_stop(message_id=message_id)


async def chat_resume(
    *, conversation: Conversation, shown_streaming: list[int], reply_to: str
) -> tuple[list[int], list[Message]]:
    """Bring a newly connected socket up to date.

    Running replies are asked to send their text so far to ``reply_to``; returns their
    ids, and the replies the page showed as streaming that have finished since, to be
    shown whole. Ids in ``shown_streaming`` that name no reply of this conversation (a
    user's message, another conversation's) are ignored.
    """
    running = [message_id async for message_id in _streaming_ids(conversation_id=conversation.pk)]
    await generation_sync(message_ids=running, reply_to=reply_to)
    path = await sync_to_async(message_path_ids)(conversation=conversation)
    finished = (
        conversation.messages.select_related("usage")
        .filter(pk__in=set(shown_streaming) & set(path), role=Message.Role.ASSISTANT)
        .exclude(pk__in=running)
    )
    return running, [message async for message in finished]


def _streaming_ids(*, conversation_id: int):
    return (
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
        .aiterator()
    )

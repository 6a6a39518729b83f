"""Conversations and their messages: what a user does in the chat UI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from conversations.accounts.access import access_allows
from conversations.accounts.selectors import chat_model_default, chat_model_list
from conversations.chat.attachments.lifecycle import (
    attachments_check_model,
    attachments_claim,
    attachments_unsent,
    files_delete_on_commit,
)
from conversations.chat.attachments.parts import context_check
from conversations.chat.generation.control import generation_stop, generation_sync
from conversations.chat.generation.finish import reply_interrupt_save
from conversations.chat.generation.run import generation_start
from conversations.chat.prompt import prompt_build, prompt_reserve
from conversations.chat.selectors import (
    message_path_ids,
    message_subtree_ids,
    messages_for_display,
)
from conversations.chat.settings import (
    chat_settings_clean,
)
from conversations.chat.titles import title_from_message
from conversations.core import events
from conversations.core.errors import InvalidInput, NotFound
from conversations.core.events import conversation_group, event_publish
from conversations.core.ids import row_id
from conversations.models import Attachment, ChatModel, Conversation, Message

MAX_MESSAGE_CHARS = 100_000


@transaction.atomic
def conversation_start(
    *,
    user: User,
    content: str,
    model_name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    attachment_ids: list[Any] | None = None,
) -> tuple[Message, Message]:
    """A new conversation holding the user's first message and its reply to generate.

    ``settings`` are the new chat's system prompt and parameters as typed (strings).
    """
    model = chat_model_resolve(user=user, model_name=model_name)
    cleaned = chat_settings_clean(data=settings or {}, model=model)
    conversation = Conversation.objects.create(user=user, model=model, **cleaned)
    return message_send(conversation=conversation, content=content, attachment_ids=attachment_ids)


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())[:200]
    if not title:
        raise InvalidInput("A title cannot be empty.")
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete the conversation with its attached files, stopping any reply still being written for it."""
    streaming = list(conversation.messages.filter(status=Message.Status.STREAMING).values_list("pk", flat=True))
    with transaction.atomic():
        files = list(conversation.messages.values_list("attachments__file", flat=True).exclude(attachments=None))
        conversation.delete()
        files_delete_on_commit(names=files)
    for message_id in streaming:
        async_to_sync(generation_stop)(message_id=message_id)


def chat_model_resolve(*, user: User, model_name: str | None) -> ChatModel:
    """The enabled model of that name that ``user`` may use, or their default one when no name is given."""
    if model_name:
        model = chat_model_list(user=user).filter(name=model_name).first()
        if model is None:
            raise InvalidInput(f"The model “{model_name}” is not available to you. Pick another one.")
        return model
    model = chat_model_default(user=user)
    if model is None:
        if ChatModel.objects.filter(enabled=True, provider__enabled=True).exists():
            raise InvalidInput("No model is available to you yet. An admin can give you access to one.")
        raise InvalidInput("No model is set up yet. An admin can add a provider in the admin.")
    return model


def _model_check(conversation: Conversation) -> None:
    """Refuse a reply from a model the conversation's user may no longer use (taken out of their groups since)."""
    model = conversation.model
    if model is not None and not access_allows(user=conversation.user, model=model):
        raise InvalidInput(f"The model “{model.label}” is no longer available to you. Pick another one.")


@transaction.atomic
def message_send(
    *, conversation: Conversation, content: str, model_name: str | None = None, attachment_ids: list[Any] | None = None
) -> tuple[Message, Message]:
    """Save the user's message (with the files uploaded for it) and an empty assistant reply in state
    ``streaming``. A refusal (``InvalidInput``) saves nothing.

    The caller starts the generation for the returned assistant message.
    """
    attachments = attachments_unsent(user=conversation.user, ids=attachment_ids or [])
    content = message_content_clean(content, required=not attachments)
    conversation = _conversation_locked(conversation)
    _ensure_idle(conversation)
    if model_name or conversation.model is None:
        conversation.model = chat_model_resolve(user=conversation.user, model_name=model_name)
    _model_check(conversation)
    attachments_check_model(attachments=attachments, model=conversation.model)
    if conversation.current_leaf_id is None:
        conversation.title = title_from_message(content or attachments[0].name)
    user_message = Message.objects.create(
        conversation=conversation, parent_id=conversation.current_leaf_id, role=Message.Role.USER, content=content
    )
    attachments_claim(attachments=attachments, message=user_message)
    return user_message, _assistant_reply_create(
        conversation=conversation, parent=user_message, attachments=attachments
    )


def message_content_clean(content: str, *, required: bool = True) -> str:
    """A message's text as kept: trimmed, not over the limit, and not empty unless not ``required`` (a
    message of files alone); else a InvalidInput saying so."""
    content = content.strip()
    if required and not content:
        raise InvalidInput("Type a message first.")
    if len(content) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"That message is {len(content):,} characters; the limit is {MAX_MESSAGE_CHARS:,}.")
    return content


@transaction.atomic
def message_regenerate(*, conversation: Conversation, message_id: Any = None) -> tuple[int | None, Message]:
    """A new reply to the same message as the reply ``message_id`` (by default the current leaf), as its
    sibling; returns (the old one's id if it ended the path, else None, and the new one).

    The old reply stays, as a sibling of the new one off the current path, with its usage
    record and stored turn; the new one's branch becomes current.
    """
    conversation = _conversation_locked(conversation)
    _ensure_idle(conversation)
    last = conversation.current_leaf if message_id is None else _message_of(conversation, message_id)
    if last is None or last.role != Message.Role.ASSISTANT:
        raise InvalidInput("There is no reply to regenerate.")
    if conversation.model is None:
        conversation.model = chat_model_resolve(user=conversation.user, model_name=None)
    _model_check(conversation)
    ended_path = last.pk == conversation.current_leaf_id
    return last.pk if ended_path else None, _assistant_reply_create(conversation=conversation, parent=last.parent)


@transaction.atomic
def conversation_branch_select(*, conversation: Conversation, message: Message) -> Conversation:
    """Show the branch through ``message``: the current leaf becomes the newest message below it.

    The newest descendant is always a leaf, since a message is written after the one it follows.
    The conversation's place in the list (``updated_at``) does not move.
    """
    if message.conversation_id != conversation.pk:
        raise NotFound("No such message in this conversation.")
    newest = max(message_subtree_ids(conversation=conversation, message_id=message.pk))
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


def _message_of(conversation: Conversation, message_id: Any) -> Message:
    """A message of this conversation, or ``NotFound`` (no such id, or another conversation's)."""
    pk = row_id(str(message_id))
    message = Message.objects.filter(conversation_id=conversation.pk, pk=pk).first() if pk is not None else None
    if message is None:
        raise NotFound("That message is not in this conversation (it may have been deleted). Reload the page.")
    return message


def _conversation_locked(conversation: Conversation) -> Conversation:
    """The conversation re-read and locked for this transaction, with the user, model and provider a reply needs."""
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("user", "model__provider")
        .get(pk=conversation.pk)
    )


def _assistant_reply_create(
    *, conversation: Conversation, parent: Message | None, attachments: list[Attachment] | None = None
) -> Message:
    """The reply to ``parent`` to generate, made the current leaf, with its usage reserved against the
    user's budget and rate limits (the path as the model will read it: documents, images); refused when
    documents just attached do not fit the model's context."""
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
    prompt = prompt_build(reply=reply)
    context_check(model=model, history=prompt.messages, attachments=attachments or [])
    prompt_reserve(reply=reply, prompt=prompt)
    return reply


def _ensure_idle(conversation: Conversation) -> None:
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise InvalidInput("Wait for the current reply to finish, or stop it.")


async def chat_send(
    *, conversation: Conversation, content: str, model_name: str | None = None, attachment_ids: list[Any] | None = None
) -> Message:
    """Send the user's message and start the reply; every open tab is told."""
    user_message, reply = await sync_to_async(message_send)(
        conversation=conversation, content=content, model_name=model_name, attachment_ids=attachment_ids
    )
    try:
        await event_publish(
            conversation_group(conversation.pk),
            events.chat_turn(
                message_ids=[user_message.pk, reply.pk],
                title=reply.conversation.title,
            ),
        )
    finally:  # a reply saved as streaming is always generated, announced or not
        generation_start(message_id=reply.pk)
    return reply


async def chat_start(
    *,
    user: User,
    content: str,
    model_name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    attachment_ids: list[Any] | None = None,
) -> Conversation:
    """Start a conversation with its first message (its files, its prompt and parameters) and begin the reply."""
    _, reply = await sync_to_async(conversation_start)(
        user=user, content=content, model_name=model_name, settings=settings, attachment_ids=attachment_ids
    )
    generation_start(message_id=reply.pk)
    return reply.conversation


async def chat_regenerate(*, conversation: Conversation, message_id: Any = None) -> Message:
    """Regenerate a reply (by default the last) as a new version of it; the tabs swap the last reply, or
    show the new branch when an earlier reply was regenerated."""
    old_id, reply = await sync_to_async(message_regenerate)(conversation=conversation, message_id=message_id)
    try:
        if old_id is None:
            await event_publish(conversation_group(conversation.pk), events.chat_branch(anchor=reply.pk))
        else:
            await event_publish(
                conversation_group(conversation.pk),
                events.chat_turn(
                    message_ids=[reply.pk],
                    title=reply.conversation.title,
                    replaces=old_id,
                ),
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
) -> tuple[list[int], set[int], list[Message]]:
    """Bring a newly connected socket up to date.

    Running replies on the current path are asked to send their text so far to ``reply_to``;
    returns their ids, the ids of those running on other branches (which the tab does not
    show), and the replies the page showed as streaming that have finished since, to be
    shown whole. Ids in ``shown_streaming`` that name no reply of this conversation (a
    user's message, another conversation's) are ignored.
    """
    running = [message_id async for message_id in _streaming_ids(conversation_id=conversation.pk)]
    path = set(await sync_to_async(message_path_ids)(conversation=conversation))
    shown = [message_id for message_id in running if message_id in path]
    await generation_sync(message_ids=shown, reply_to=reply_to)
    finished = conversation.messages.filter(pk__in=set(shown_streaming) & path, role=Message.Role.ASSISTANT).exclude(
        pk__in=running
    )
    finished_rows = await sync_to_async(messages_for_display)([message async for message in finished])
    return shown, set(running) - path, finished_rows


def _streaming_ids(*, conversation_id: int) -> AsyncIterator[int]:
    return (
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
        .aiterator()
    )

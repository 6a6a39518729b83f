"""Branching a conversation: edit a message as a new version, regenerate any reply, continue a cut
reply, switch versions, delete a branch; and telling every open tab.

Edits and regenerations make siblings (messages with the same parent); the branch through the
new one becomes current. Each is refused while a reply of the conversation streams ("stop it
first", as LibreChat and Open WebUI do); switching versions and deleting are not. The page
learns of a new current path from a ``chat.branch`` event: every socket on the conversation
sends its tab the path's latest page of messages whole.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from conversations.chat.generation.control import generation_stop
from conversations.chat.generation.run import generation_start
from conversations.chat.prompt import prompt_build, prompt_reserve
from conversations.chat.selectors import message_path_ids, message_subtree_ids
from conversations.chat.turns import (
    _assistant_reply_create,
    _conversation_locked,
    _ensure_idle,
    _message_of,
    _model_check,
    chat_model_resolve,
    conversation_branch_select,
    message_content_clean,
)
from conversations.core import events
from conversations.core.errors import InvalidInput
from conversations.core.events import conversation_group, event_publish
from conversations.core.ids import row_id
from conversations.core.rendering import markdown_render
from conversations.models import Conversation, Message


@transaction.atomic
def message_edit(*, conversation: Conversation, message_id: Any, content: str) -> tuple[Message, Message | None]:
    """Save ``content`` as a new version of a message, beside it; returns (the new version, its reply).

    A user message's new version gets a reply to generate (returned, streaming); a reply's
    new version is kept as written, and nothing is generated. Its branch becomes current.
    """
    content = message_content_clean(content)
    conversation = _conversation_locked(conversation)
    _ensure_idle(conversation)
    message = _message_of(conversation, message_id)
    if message.role == Message.Role.USER:
        if conversation.model is None:
            conversation.model = chat_model_resolve(user=conversation.user, model_name=None)
        _model_check(conversation)
        edited = Message.objects.create(
            conversation=conversation, parent_id=message.parent_id, role=Message.Role.USER, content=content
        )
        return edited, _assistant_reply_create(conversation=conversation, parent=edited)
    now = timezone.now()
    edited = Message.objects.create(
        conversation=conversation,
        parent_id=message.parent_id,
        role=message.role,
        content=content,
        content_html=markdown_render(content),
        model_name=message.model_name,
        upstream_model=message.upstream_model,
        finished_at=now,
    )
    conversation.current_leaf = edited
    conversation.save(update_fields=["current_leaf", "updated_at"])
    return edited, None


@transaction.atomic
def message_continue(*, conversation: Conversation, message_id: Any) -> Message:
    """Have the model go on with the last reply, cut at its length limit or stopped: it streams again,
    its new text appended, under a usage reservation of its own (the calls are accounted apart)."""
    conversation = _conversation_locked(conversation)
    _ensure_idle(conversation)
    message = _message_of(conversation, message_id)
    if message.role != Message.Role.ASSISTANT or not (
        message.finish_reason == "length" or message.status == Message.Status.STOPPED
    ):
        raise InvalidInput("Only a reply cut at its length limit, or stopped, can be continued.")
    if message.pk != conversation.current_leaf_id:
        raise InvalidInput("Only the last reply can be continued.")
    if conversation.model is None:
        conversation.model = chat_model_resolve(user=conversation.user, model_name=None)
        conversation.save(update_fields=["model", "updated_at"])
    _model_check(conversation)
    prompt_reserve(reply=message, prompt=prompt_build(reply=message, prefix=message.content))
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.STREAMING, error="", finish_reason="", finished_at=None, updated_at=timezone.now()
    )
    message.status = Message.Status.STREAMING
    return message


def message_select(*, conversation: Conversation, message_id: Any) -> Conversation:
    """Show the version ``message_id`` of a message, down to its newest message."""
    return conversation_branch_select(conversation=conversation, message=_message_of(conversation, message_id))


@transaction.atomic
def branch_delete(*, conversation: Conversation, message_id: Any) -> list[int]:
    """Delete a message and everything after it; returns the ids of the replies that were streaming in it.

    When it was on the current path, the newest of its other versions becomes current (down
    to its newest message), else the message before it ends the path. Usage records and
    stored completions stay, for the ledger and the admin.
    """
    conversation = _conversation_locked(conversation)
    message = _message_of(conversation, message_id)
    subtree = message_subtree_ids(conversation=conversation, message_id=message.pk)
    streaming = list(
        Message.objects.filter(pk__in=subtree, status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
    on_path = message.pk in message_path_ids(conversation=conversation)
    others = list(
        conversation.messages.filter(parent_id=message.parent_id).exclude(pk=message.pk).values_list("pk", flat=True)
    )
    message.delete()
    if on_path:
        if others:
            conversation_branch_select(conversation=conversation, message=Message.objects.get(pk=max(others)))
        else:
            Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=message.parent_id)
    return streaming


# --- What the socket calls: the change, then every tab told ---------------------------------------


async def chat_edit(*, conversation: Conversation, message_id: Any, content: str) -> Message:
    edited, reply = await sync_to_async(message_edit)(conversation=conversation, message_id=message_id, content=content)
    try:
        await event_publish(conversation_group(conversation.pk), events.chat_branch(anchor=edited.pk))
    finally:  # a reply saved as streaming is always generated, announced or not
        if reply is not None:
            generation_start(message_id=reply.pk)
    return edited


async def chat_select(*, conversation: Conversation, message_id: Any) -> None:
    await sync_to_async(message_select)(conversation=conversation, message_id=message_id)
    await event_publish(conversation_group(conversation.pk), events.chat_branch(anchor=row_id(str(message_id))))


async def chat_continue(*, conversation: Conversation, message_id: Any) -> Message:
    message = await sync_to_async(message_continue)(conversation=conversation, message_id=message_id)
    try:
        await event_publish(conversation_group(conversation.pk), events.chat_continue(message_id=message.pk))
    finally:
        generation_start(message_id=message.pk, continuing=True)
    return message


async def chat_branch_delete(*, conversation: Conversation, message_id: Any) -> None:
    """Delete a branch, stopping what streams in it, wherever it runs."""
    streaming = await sync_to_async(branch_delete)(conversation=conversation, message_id=message_id)
    for reply_id in streaming:
        await generation_stop(message_id=reply_id)
    await event_publish(conversation_group(conversation.pk), events.chat_branch())

"""Keeping conversations: pinning, archiving, folders and actions on several at once.

These change how a conversation is listed, not its activity: they write with ``update()`` so
``updated_at`` (the sidebar's order) stays when it was last talked in.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from conversations.chat.turns import conversation_delete
from conversations.core.errors import InvalidInput, NotFound
from conversations.models import Conversation, Folder

FOLDER_NAME_CHARS = 100
BULK_ACTIONS = ("archive", "restore", "move", "delete", "pin", "unpin")


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    Conversation.objects.filter(pk=conversation.pk).update(pinned=pinned)
    conversation.pinned = pinned
    return conversation


def conversation_archive(*, conversation: Conversation, archived: bool) -> Conversation:
    """Archive (hidden from the sidebar, listed on the Archived page) or restore; an archived one is unpinned."""
    fields = {"archived": archived, **({"pinned": False} if archived else {})}
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    for name, value in fields.items():
        setattr(conversation, name, value)
    return conversation


def conversation_move(*, conversation: Conversation, folder: Folder | None) -> Conversation:
    """File the conversation in ``folder`` (one of its owner's), or take it out of any with None."""
    if folder is not None and folder.user_id != conversation.user_id:
        raise NotFound("No such folder.")
    Conversation.objects.filter(pk=conversation.pk).update(folder=folder)
    conversation.folder = folder
    return conversation


def folder_create(*, user: User, name: str) -> Folder:
    """A new folder; a name the user already has (in any case) is refused."""
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("A folder needs a name.", param="name")
    if '"' in name:  # search names a folder in quotes: folder:"two words"
        raise InvalidInput('A folder name cannot contain a double quote (").', param="name")
    if len(name) > FOLDER_NAME_CHARS:
        raise InvalidInput(f"A folder name is at most {FOLDER_NAME_CHARS} characters.", param="name")
    if Folder.objects.filter(user=user, name__iexact=name).exists():
        raise InvalidInput(f"You already have a folder named “{name}”.", param="name")
    try:
        with transaction.atomic():
            return Folder.objects.create(user=user, name=name)
    except IntegrityError:  # the same name created meanwhile, in another tab
        raise InvalidInput(f"You already have a folder named “{name}”.", param="name") from None


def folder_delete(*, folder: Folder) -> None:
    """Delete the folder; its conversations stay, in no folder."""
    folder.delete()


@transaction.atomic
def conversations_bulk(
    *, user: User, conversation_ids: Iterable[int], action: str, folder: Folder | None = None
) -> int:
    """Apply ``action`` to the user's conversations of those ids; returns how many.

    An id that is not one of the user's conversations fails the whole request (NotFound), so
    nothing is half done.
    """
    if action not in BULK_ACTIONS:
        raise InvalidInput(f"Unknown action “{action}”.", param="action")
    ids = set(conversation_ids)
    if not ids:
        raise InvalidInput("Select at least one conversation.", param="ids")
    conversations = Conversation.objects.filter(user=user, pk__in=ids)
    if conversations.count() != len(ids):
        raise NotFound("No such conversation.")
    if action == "delete":
        for conversation in conversations:
            conversation_delete(conversation=conversation)
        return len(ids)
    if action == "move":
        if folder is not None and folder.user_id != user.pk:
            raise NotFound("No such folder.")
        return conversations.update(folder=folder)
    fields = {
        "archive": {"archived": True, "pinned": False},
        "restore": {"archived": False},
        "pin": {"pinned": True},
        "unpin": {"pinned": False},
    }[action]
    return conversations.update(**fields)

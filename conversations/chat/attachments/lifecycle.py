"""Attachments' lives: unsent uploads purged, files deleted with their rows (after the commit), uploads claimed by the message that sends them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from conversations.core.errors import InvalidInput, NotFound
from conversations.core.ids import row_id
from conversations.models import Attachment, ChatModel, Message

# Uploads never sent with a message are removed after this long (at the user's next upload).
UNSENT_KEEP = timedelta(days=1)


def unsent_purge(*, user: User) -> None:
    """Remove the user's uploads that were never sent with a message and are older than a day."""
    stale = Attachment.objects.filter(user=user, message__isnull=True, created_at__lt=timezone.now() - UNSENT_KEEP)
    attachments_delete(attachments=stale)


def attachments_delete(*, attachments: Iterable[Attachment]) -> None:
    """Delete the rows now and their files once the transaction commits (a rollback keeps both)."""
    rows = list(attachments)
    names = [a.file.name for a in rows]
    Attachment.objects.filter(pk__in=[a.pk for a in rows]).delete()
    files_delete_on_commit(names=names)


def files_delete_on_commit(*, names: list[str]) -> None:
    """Remove stored files after the rows that named them are gone for good."""
    if not names:
        return
    from django.core.files.storage import storages

    def remove() -> None:
        for name in names:
            storages["attachments"].delete(name)

    transaction.on_commit(remove)


def attachment_discard(*, user: User, attachment_id: int) -> None:
    """Remove an upload the user took back out of the composer (one not sent yet)."""
    with transaction.atomic():
        found = Attachment.objects.filter(user=user, pk=attachment_id, message__isnull=True)
        if not found.exists():
            raise NotFound("No such file.")
        attachments_delete(attachments=found)


def attachments_unsent(*, user: User, ids: Iterable[Any]) -> list[Attachment]:
    """The user's uploads named by ``ids`` not sent yet, in the given order; a bad or foreign id is refused."""
    wanted: list[int] = []
    for raw in ids:
        attachment_id = row_id(str(raw))
        if attachment_id is None:
            raise InvalidInput("An attached file was not found. Remove it and attach it again.")
        if attachment_id not in wanted:
            wanted.append(attachment_id)
    limit = settings.ATTACHMENTS["MAX_FILES"]
    if len(wanted) > limit:
        raise InvalidInput(f"A message may have at most {limit} files; this one has {len(wanted)}.")
    if not wanted:
        return []
    found = {
        a.pk: a for a in Attachment.objects.select_for_update().filter(user=user, message__isnull=True, pk__in=wanted)
    }
    if len(found) != len(wanted):
        raise InvalidInput(
            "An attached file was not found: it was removed, or sent already. Remove it and attach it again."
        )
    return [found[pk] for pk in wanted]


def attachments_check_model(*, attachments: list[Attachment], model: ChatModel) -> None:
    """Refuse images for a model that does not read them, before anything is sent."""
    images = [a.name for a in attachments if a.is_image]
    if images and not model.accepts_images:
        raise InvalidInput(
            f"{model.label} does not accept images ({', '.join(images)}). Pick a model that does, or remove the image."
        )


def attachments_claim(*, attachments: list[Attachment], message: Message) -> None:
    """The uploads now belong to ``message`` (locked by ``attachments_unsent`` in this transaction)."""
    if attachments:
        Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)

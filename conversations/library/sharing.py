"""Share links: a public, read-only snapshot of a conversation's current path.

The snapshot is taken when the link is made, so later messages (or edits) are not shown, and
it holds only what a reader needs: each message's role, text, attached files (which the link
then serves) and, for a reply, the model's name.
No usage, costs, ids of other rows or anything about the user goes in.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from conversations.chat.selectors import message_list
from conversations.core.errors import NotFound, SharingOff
from conversations.core.rendering import markdown_render
from conversations.models import (
    Attachment,
    Conversation,
    Message,
    SharedLink,
    SiteSettings,
)


def sharing_enabled() -> bool:
    return SiteSettings.load().sharing_enabled


def share_create(*, user: User, conversation: Conversation) -> SharedLink:
    """A new link to a snapshot of the conversation's current path (each share is its own link)."""
    if not sharing_enabled():
        raise SharingOff("Sharing is turned off on this site.")
    if conversation.user_id != user.pk:
        raise NotFound("No such conversation.")
    snapshot = [_snapshot_message(message) for message in message_list(conversation=conversation)]
    if not snapshot:
        raise NotFound("There is nothing to share in this conversation yet.")
    return SharedLink.objects.create(
        token=secrets.token_urlsafe(24),
        user=user,
        conversation=conversation,
        title=conversation.title,
        messages=snapshot,
    )


def _snapshot_message(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == Message.Role.ASSISTANT:
        entry["model"] = getattr(message, "model_label", "") or message.model_name
    if files := [{"id": a.pk, "name": a.name, "image": a.is_image} for a in message.attachments.all()]:
        entry["attachments"] = files
    return entry


def shared_attachment(*, link: SharedLink, attachment_id: int) -> Attachment:
    """A file of the link's snapshot, for anyone holding the link; any other id is NotFound."""
    shared = {file["id"] for entry in link.messages for file in entry.get("attachments", ())}
    attachment = Attachment.objects.filter(pk=attachment_id).first() if attachment_id in shared else None
    if attachment is None:
        raise NotFound("No such file.")
    return attachment


def shared_messages(*, link: SharedLink) -> list[dict[str, Any]]:
    """The snapshot's messages for the page, each reply's Markdown rendered and sanitised."""
    return [
        {**entry, "html": markdown_render(entry.get("content") or "")} if entry.get("role") == "assistant" else entry
        for entry in link.messages
    ]


def share_revoke(*, link: SharedLink) -> SharedLink:
    """Revoke the link: it answers 404 from now on. Revoking twice keeps the first time."""
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
    return link

"""The reader of chatweb's own JSON export entries: a flat list of messages naming their parents."""

from __future__ import annotations

from typing import Any

from conversations.library.imports.imported import ImportedConversation, ImportedMessage, UnreadableEntry
from conversations.library.imports.values import ROLES, as_content, as_text, as_time, as_title
from conversations.models import Message


def chatweb_read(entry: dict[str, Any]) -> ImportedConversation:
    messages = entry.get("messages")
    if not isinstance(messages, list):
        raise UnreadableEntry("its messages are not a list")
    conversation = ImportedConversation(
        format="chatweb",
        key=f"chatweb:{entry.get('id')}:{as_text(entry.get('created_at'))}",
        title=as_title(entry.get("title")),
        created_at=as_time(entry.get("created_at")),
        updated_at=as_time(entry.get("updated_at")),
        pinned=entry.get("pinned") is True,
        archived=entry.get("archived") is True,
        current=str(entry["current_leaf"]) if entry.get("current_leaf") is not None else None,
    )
    for m in messages:
        if not isinstance(m, dict) or ROLES.get(as_text(m.get("role"))) is None or m.get("id") is None:
            raise UnreadableEntry(f"“{conversation.title}” has a message without an id or a known role")
        conversation.messages.append(
            ImportedMessage(
                key=str(m["id"]),
                parent=str(m["parent"]) if m.get("parent") is not None else None,
                role=ROLES[m["role"]],
                content=as_content(as_text(m.get("content"))),
                created_at=as_time(m.get("created_at")),
                model_name=as_text(m.get("model")),
                status=m["status"]
                if m.get("status") in Message.Status.values and m["status"] != "streaming"
                else Message.Status.COMPLETE,
                finish_reason=as_text(m.get("finish_reason")),
            )
        )
    return conversation

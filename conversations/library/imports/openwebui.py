"""The reader of Open WebUI's chat export entries: a history of linked messages, or an older flat list."""

from __future__ import annotations

from typing import Any

from conversations.library.imports.imported import ImportedConversation, ImportedMessage, UnreadableEntry
from conversations.library.imports.values import ROLES, as_content, as_text, as_time, as_title


def openwebui_read(entry: dict[str, Any]) -> ImportedConversation:
    """Open WebUI: ``chat.history.messages`` {id: {parentId, childrenIds, role, content, model, timestamp}}
    with ``chat.history.currentId``; older exports only have the list ``chat.messages``."""
    chat = entry["chat"]
    key = as_text(entry.get("id")) or as_text(chat.get("id"))
    if not key:
        raise UnreadableEntry("it has no chat id")
    conversation = ImportedConversation(
        format="openwebui",
        key=f"openwebui:{key}",
        title=as_title(entry.get("title") or chat.get("title")),
        created_at=as_time(entry.get("created_at") or chat.get("timestamp")),
        updated_at=as_time(entry.get("updated_at")),
        pinned=entry.get("pinned") is True,
        archived=entry.get("archived") is True,
    )
    history = chat.get("history") if isinstance(chat.get("history"), dict) else {}
    nodes = history.get("messages")
    if isinstance(nodes, dict) and nodes:
        items = [n for n in nodes.values() if isinstance(n, dict)]
        conversation.current = as_text(history.get("currentId")) or None
    elif isinstance(chat.get("messages"), list):
        items, previous = [], None
        for n in chat["messages"]:
            if isinstance(n, dict):
                items.append({**n, "parentId": n.get("parentId", previous)})
                previous = n.get("id")
    else:
        raise UnreadableEntry(f"“{conversation.title}” has no messages")
    for n in items:
        role = ROLES.get(as_text(n.get("role")))
        if role is None or n.get("id") is None:
            continue
        conversation.messages.append(
            ImportedMessage(
                key=str(n["id"]),
                parent=str(n["parentId"]) if n.get("parentId") is not None else None,
                role=role,
                content=as_content(as_text(n.get("content"))),
                created_at=as_time(n.get("timestamp")),
                model_name=as_text(n.get("model")),
            )
        )
    return conversation

"""The reader of ChatGPT's ``conversations.json`` entries: a node mapping, walked parents first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from conversations.library.imports.imported import ImportedConversation, ImportedMessage, UnreadableEntry
from conversations.library.imports.values import ROLES, as_content, as_list, as_object, as_text, as_time, as_title
from conversations.models import Message


def chatgpt_read(entry: dict[str, Any]) -> ImportedConversation:
    """ChatGPT: ``mapping`` of nodes {id, message, parent, children}; ``current_node`` is the branch shown.

    Nodes without a message (the root), hidden system messages and tool calls are left out; their
    children hang on the nearest message kept.
    """
    mapping = entry.get("mapping")
    if not isinstance(mapping, dict):
        raise UnreadableEntry("its mapping is not an object")
    key = as_text(entry.get("conversation_id")) or as_text(entry.get("id"))
    if not key:
        raise UnreadableEntry("it has no conversation id")
    conversation = ImportedConversation(
        format="chatgpt",
        key=f"chatgpt:{key}",
        title=as_title(entry.get("title")),
        created_at=as_time(entry.get("create_time")),
        updated_at=as_time(entry.get("update_time")),
        archived=entry.get("is_archived") is True,
    )
    kept: dict[str, ImportedMessage] = {}
    parents = {node_id: node.get("parent") for node_id, node in mapping.items() if isinstance(node, dict)}

    def kept_ancestor(node_id: Any) -> str | None:
        hops = 0
        while isinstance(node_id, str) and hops <= len(parents):
            if node_id in kept:
                return node_id
            node_id = parents.get(node_id)
            hops += 1
        return None

    for node_id, node in _chatgpt_order(mapping):
        message = node.get("message")
        if not isinstance(message, dict):
            continue
        role = ROLES.get(as_text((message.get("author") or {}).get("role")))
        metadata = as_object(message.get("metadata"))
        content = as_object(message.get("content"))
        parts = as_list(content.get("parts"))
        text = "\n\n".join(p if isinstance(p, str) else "[attachment not imported]" for p in parts).strip()
        if not text and isinstance(content.get("text"), str):
            text = content["text"].strip()
        if role is None or not text or metadata.get("is_visually_hidden_from_conversation"):
            continue
        kept[node_id] = ImportedMessage(
            key=node_id,
            parent=kept_ancestor(node.get("parent")),
            role=role,
            content=as_content(text),
            created_at=as_time(message.get("create_time")),
            model_name=as_text(metadata.get("model_slug")),
            status=Message.Status.COMPLETE
            if message.get("status") in (None, "finished_successfully")
            else Message.Status.STOPPED,
        )
    conversation.messages = list(kept.values())
    conversation.current = kept_ancestor(entry.get("current_node"))
    return conversation


def _chatgpt_order(mapping: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The nodes parents first (from the roots down the ``children`` lists), then any unreachable ones."""
    roots = [k for k, n in mapping.items() if isinstance(n, dict) and n.get("parent") not in mapping]
    seen: set[str] = set()
    stack = list(reversed(roots))
    while stack:
        node_id = stack.pop()
        if node_id in seen or not isinstance(mapping.get(node_id), dict):
            continue
        seen.add(node_id)
        yield node_id, mapping[node_id]
        children = mapping[node_id].get("children")
        stack.extend(reversed([c for c in children if isinstance(c, str)] if isinstance(children, list) else []))
    for node_id, node in mapping.items():
        if node_id not in seen and isinstance(node, dict):
            yield node_id, node

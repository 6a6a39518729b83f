"""Which export an entry comes from, and the entry read by that format's reader as a tree ordered
parents first: the one door from an entry to the readers."""

from __future__ import annotations

from typing import Any

from conversations.library.imports.chatgpt import chatgpt_read
from conversations.library.imports.chatweb import chatweb_read
from conversations.library.imports.imported import ImportedConversation, ImportedMessage, UnreadableEntry
from conversations.library.imports.openwebui import openwebui_read


def entry_format(entry: Any) -> str | None:
    """Which export an entry comes from, by the keys each writes; None for none of them."""
    if not isinstance(entry, dict):
        return None
    if "mapping" in entry:
        return "chatgpt"
    if entry.get("chatweb") == 1:
        return "chatweb"
    if isinstance(entry.get("chat"), dict):
        return "openwebui"
    return None


def entry_read(entry: Any) -> ImportedConversation:
    """One entry of an export as a conversation tree; UnreadableEntry when it is none of the formats."""
    kind = entry_format(entry)
    if kind is None:
        raise UnreadableEntry("not a ChatGPT, chatweb or Open WebUI conversation")
    conversation = {"chatgpt": chatgpt_read, "chatweb": chatweb_read, "openwebui": openwebui_read}[kind](entry)
    if not conversation.messages:
        raise UnreadableEntry(f"“{conversation.title}” has no messages")
    conversation.messages = _parents_first(conversation.messages)
    return conversation


def _parents_first(messages: list[ImportedMessage]) -> list[ImportedMessage]:
    """The messages ordered so each comes after its parent; a parent that is missing, or a cycle, makes a root."""
    by_key = {m.key: m for m in messages}
    ordered: list[ImportedMessage] = []
    placed: set[str] = set()
    for message in messages:
        chain: list[ImportedMessage] = []
        in_chain: set[str] = set()
        node: ImportedMessage | None = message
        while node is not None and node.key not in placed and node.key not in in_chain:
            chain.append(node)
            in_chain.add(node.key)
            node = by_key.get(node.parent) if node.parent else None
        if node is not None and node.key in in_chain:  # a cycle: the farthest ancestor becomes a root
            chain[-1].parent = None
        for item in reversed(chain):
            if item.parent not in by_key:
                item.parent = None
            placed.add(item.key)
            ordered.append(item)
    return ordered

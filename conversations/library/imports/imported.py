"""What a reader makes of one export entry: a conversation and its messages as a tree of keys,
or UnreadableEntry. Its own module so the readers and the writer share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from conversations.models import Message


class UnreadableEntry(Exception):
    """One entry of the file that is not a conversation this importer can read."""


@dataclass
class ImportedMessage:
    key: str
    parent: str | None
    role: str
    content: str
    created_at: datetime | None = None
    model_name: str = ""
    status: str = Message.Status.COMPLETE
    finish_reason: str = ""


@dataclass
class ImportedConversation:
    format: str
    key: str
    title: str
    messages: list[ImportedMessage] = field(default_factory=list)
    current: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pinned: bool = False
    archived: bool = False

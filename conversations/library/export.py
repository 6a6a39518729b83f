"""Exporting a user's conversations: Markdown of the current path, chatweb JSON of the whole tree
(models, parameters, timestamps, usage), and a zip of all of them, each streamed as it is written.

chatweb JSON is a list of conversations, each marked ``"chatweb": 1``; ``library.imports`` reads
it back to the same tree (messages keep their ``parent``, the conversation its ``current_leaf``).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import User
from django.db.models import Prefetch, QuerySet, Sum
from django.db.models.functions import Length

from conversations.chat.selectors import conversation_list
from conversations.models import Attachment, Conversation, Message, UsageRecord

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

CHUNK = 100
FILE_CHUNK = 1 << 20
# Bytes a message adds to an export besides its text (JSON keys and Markdown headings): for the estimate.
MESSAGE_OVERHEAD = 420


def _with_messages(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    messages = Message.objects.prefetch_related("usage_records", "stored_completions", "attachments").order_by(
        "created_at", "id"
    )
    return conversations.select_related("model", "folder").prefetch_related(Prefetch("messages", queryset=messages))


def export_conversations(*, user: User, conversation_ids: Iterable[int] | None = None) -> Iterator[Conversation]:
    """The user's conversations (all, or those ids) with their messages, read CHUNK at a time."""
    conversations = conversation_list(user=user)
    if conversation_ids is not None:
        conversations = conversations.filter(pk__in=list(conversation_ids))
    return _with_messages(conversations).iterator(chunk_size=CHUNK)


def export_estimate(*, user: User) -> tuple[int, int]:
    """How many conversations the user has, and about how many bytes a zip of them takes (for progress)."""
    messages = Message.objects.filter(conversation__user=user)
    totals = messages.aggregate(chars=Sum(Length("content")))
    count = conversation_list(user=user).count()
    files = Attachment.objects.filter(message__conversation__user=user).aggregate(size=Sum("size"))["size"] or 0
    return count, 2 * (totals["chars"] or 0) + MESSAGE_OVERHEAD * messages.count() + 400 * count + files


def _current_path(conversation: Conversation) -> list[Message]:
    messages = list(conversation.messages.all())
    by_id: dict[int | None, Message] = {m.pk: m for m in messages}  # None: no leaf, or a root's parent
    path: list[Message] = []
    node = by_id.get(conversation.current_leaf_id)
    while node is not None and len(path) <= len(messages):
        path.append(node)
        node = by_id.get(node.parent_id)
    return path[::-1]


def conversation_markdown(conversation: Conversation) -> str:
    """The current path as Markdown: a heading per message, the text as it was written."""
    lines = [f"# {conversation.title}", ""]
    for message in _current_path(conversation):
        who = {"user": "You", "system": "System"}.get(message.role) or message.model_name or "Assistant"
        lines += [f"## {who} · {message.created_at:%Y-%m-%d %H:%M} UTC", "", message.content.rstrip(), ""]
    return "\n".join(lines)


def conversation_entry(conversation: Conversation) -> dict[str, Any]:
    """The whole tree of a conversation in chatweb JSON."""
    return {
        "chatweb": 1,
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model.name if conversation.model else None,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "folder": conversation.folder.name if conversation.folder else None,
        "current_leaf": conversation.current_leaf_id,
        "messages": [_message_entry(m) for m in conversation.messages.all()],
    }


def _message_entry(message: Message) -> dict[str, Any]:
    records = list(message.usage_records.all())
    first_call = min(message.stored_completions.all(), key=lambda stored: stored.created_at, default=None)
    return {
        "id": message.pk,
        "parent": message.parent_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model_name,
        "upstream_model": message.upstream_model,
        "finish_reason": message.finish_reason,
        "created_at": message.created_at.isoformat(),
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
        "imported": message.imported,
        "parameters": first_call.request if first_call is not None else None,
        "usage": _usage_entry(records) if records else None,
        "attachments": [
            {"name": a.name, "content_type": a.content_type, "kind": a.kind, "file": attachment_path(message, a)}
            for a in message.attachments.all()
        ],
    }


def attachment_path(message: Message, attachment: Attachment) -> str:
    """Where a zip of the conversations holds a message's file: by conversation, id and (safe) name."""
    return f"files/{message.conversation_id}/{attachment.pk}-{attachment.name}"


def _usage_entry(records: list[UsageRecord]) -> dict[str, Any]:
    """A reply's usage over its calls: one, or more when it was continued."""
    return {
        "prompt_tokens": sum(record.prompt_tokens for record in records),
        "completion_tokens": sum(record.completion_tokens for record in records),
        "cached_tokens": sum(record.cached_tokens for record in records),
        "reasoning_tokens": sum(record.reasoning_tokens for record in records),
        "cost": str(sum((record.cost for record in records), Decimal(0))),
        "estimated": any(record.estimated for record in records),
    }


def conversations_json(conversations: Iterable[Conversation]) -> Iterator[str]:
    """A JSON list of conversations, one entry at a time."""
    yield "["
    for index, conversation in enumerate(conversations):
        yield ("," if index else "") + "\n" + json.dumps(conversation_entry(conversation), ensure_ascii=False)
    yield "\n]\n"


class _Sink(io.RawIOBase):
    """Where zipfile writes: bytes collected until the generator hands them on (not seekable: streamed)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        before = len(self.buffer)
        self.buffer += data
        return len(self.buffer) - before

    def take(self) -> bytes:
        data, self.buffer = bytes(self.buffer), bytearray()
        return data


def _filename(conversation: Conversation) -> str:
    slug = re.sub(r"[^\w-]+", "-", conversation.title.lower(), flags=re.ASCII).strip("-")[:60] or "chat"
    return f"markdown/{conversation.pk}-{slug}.md"


def conversations_zip(read: Callable[[], Iterable[Conversation]]) -> Iterator[bytes]:
    """A zip holding conversations.json (chatweb JSON, every tree), a Markdown file per conversation and
    the files attached to its messages (where the JSON says).

    zipfile writes one member at a time, so the conversations are read twice (``read()``): once for
    the JSON, once for the Markdown files. Nothing is held beyond one chunk of conversations.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as member:
            for text in conversations_json(read()):
                member.write(text.encode())
                if sink.buffer:
                    yield sink.take()
        for conversation in read():
            archive.writestr(_filename(conversation), conversation_markdown(conversation))
            for message in conversation.messages.all():
                for attachment in message.attachments.all():
                    with (
                        attachment.file.open("rb") as stored,
                        archive.open(attachment_path(message, attachment), "w") as member,
                    ):
                        while chunk := stored.read(FILE_CHUNK):
                            member.write(chunk)
                            if sink.buffer:
                                yield sink.take()
            if sink.buffer:
                yield sink.take()
    yield sink.take()

"""Importing conversations from the exports people have: ChatGPT's ``conversations.json``, chatweb's
own JSON, and Open WebUI's chat export. All three are a JSON array of conversations.

The file is read twice, streamed (ijson), never loaded whole: a first pass checks that it is one
valid JSON array and counts its entries (so a truncated or malformed file imports nothing, and
progress can say "n of N"); the second converts each entry to a tree of messages and writes them
``IMPORT_BATCH`` conversations per transaction, saving the run's progress after each batch.

Branches stay branches: every message keeps its parent, and the conversation the node that was
current. A conversation imported before (the export's id for it, ``import_key``) is skipped and
counted, so importing the same file twice adds nothing. Imported messages are marked ``imported``:
they have no usage record and no stored completion, so they are never billed nor listed by /v1.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import IO, Any

import ijson
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from conversations.core.errors import InvalidInput
from conversations.models import Conversation, ImportRun, Message

log = logging.getLogger(__name__)

TITLE_CHARS = 200
NOTES_KEPT = 5
ROLES = {"user": Message.Role.USER, "assistant": Message.Role.ASSISTANT, "system": Message.Role.SYSTEM}


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


# --- The file -------------------------------------------------------------------------------


def import_file_check(*, upload: IO[bytes], size: int) -> tuple[str, int]:
    """The SHA-256 and entry count of an uploaded export; InvalidInput when it cannot be imported."""
    if size > settings.IMPORT_MAX_BYTES:
        raise InvalidInput(
            f"That file is {size / 2**20:,.1f} MB; the largest import is {settings.IMPORT_MAX_BYTES / 2**20:,.0f} MB. "
            "Split the export, or ask an admin to raise IMPORT_MAX_BYTES.", param="file",
        )
    if size == 0:
        raise InvalidInput("That file is empty.", param="file")
    digest = hashlib.sha256()
    for chunk in iter(lambda: upload.read(1 << 20), b""):
        digest.update(chunk)
    _rewind(upload)
    first = upload.read(64).lstrip(b" \t\r\n")[:1]
    _rewind(upload)
    if first != b"[":
        raise InvalidInput(
            "This is not a ChatGPT, chatweb or Open WebUI export: those are a JSON list of conversations "
            "(ChatGPT: the conversations.json inside its export zip).", param="file",
        )
    count = 0
    try:
        for entry in ijson.items(upload, "item", use_float=True):
            if count == 0 and entry_format(entry) is None:
                raise InvalidInput(
                    "This is not a ChatGPT, chatweb or Open WebUI export: its first entry is not a conversation "
                    "any of them writes.", param="file",
                )
            count += 1
    except ijson.JSONError as exc:
        raise InvalidInput(
            f"The file is not valid JSON, or it is cut short ({_json_error(exc)}). Nothing was imported.",
            param="file",
        ) from None
    finally:
        _rewind(upload)
    if count == 0:
        raise InvalidInput("The file holds no conversations.", param="file")
    return digest.hexdigest(), count


def _rewind(upload: IO[bytes]) -> None:
    """Back to the start of the JSON: past a UTF-8 byte order mark, which editors on Windows write."""
    upload.seek(0)
    if upload.read(3) != b"\xef\xbb\xbf":
        upload.seek(0)


def _json_error(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    text = str(detail).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def import_run_create(*, user: AbstractBaseUser, filename: str, sha256: str, total: int) -> tuple[ImportRun, ImportRun | None]:
    """A new run, and the last finished run of the same file by this user if there is one (to say so)."""
    before = ImportRun.objects.filter(user=user, sha256=sha256, status=ImportRun.Status.DONE).first()
    run = ImportRun.objects.create(user=user, filename=filename[:255], sha256=sha256, total=total)
    return run, before


def import_run_process(*, run: ImportRun, source: IO[bytes]) -> ImportRun:
    """Import every conversation of ``source`` for the run's user, a batch per transaction.

    A failure part-way (the database, a crash) leaves the batches before it imported and says so in
    ``run.error``; importing the file again adds only what is missing.
    """
    user = run.user
    batch: list[ImportedConversation] = []
    _rewind(source)
    try:
        for entry in ijson.items(source, "item", use_float=True):
            try:
                conversation = entry_read(entry)
            except UnreadableEntry as exc:
                run.skipped += 1
                if run.notes.count("\n") < NOTES_KEPT:
                    run.notes += f"Entry {run.imported + run.duplicates + run.skipped}: {exc}\n"
                continue
            run.format = run.format or conversation.format
            batch.append(conversation)
            if len(batch) >= settings.IMPORT_BATCH:
                _batch_write(run=run, user=user, batch=batch)
                batch = []
        if batch:
            _batch_write(run=run, user=user, batch=batch)
    except Exception as exc:  # the run must end, whatever stopped it; what was written stays and is counted
        log.exception("import %s stopped", run.pk)
        run.status = ImportRun.Status.FAILED
        run.error = f"The import stopped: {_json_error(exc)}."
    else:
        run.status = ImportRun.Status.DONE
    run.finished_at = timezone.now()
    run.save()
    return run


def _batch_write(*, run: ImportRun, user: AbstractBaseUser, batch: list[ImportedConversation]) -> None:
    keys = [c.key for c in batch]
    with transaction.atomic():
        seen = set(Conversation.objects.filter(user=user, import_key__in=keys).values_list("import_key", flat=True))
        fresh = []
        for conversation in batch:
            if conversation.key in seen:
                run.duplicates += 1
            else:
                seen.add(conversation.key)
                fresh.append(conversation)
        _conversations_write(user=user, conversations=fresh)
        run.imported += len(fresh)
        run.save(update_fields=["imported", "duplicates", "skipped", "notes", "format", "updated_at"])


def _conversations_write(*, user: AbstractBaseUser, conversations: list[ImportedConversation]) -> None:
    """Write the conversations and their messages: rows first (bulk), then their parents and times."""
    now = timezone.now()
    rows = Conversation.objects.bulk_create(
        Conversation(
            user=user, title=c.title, imported_from=c.format, import_key=c.key, pinned=c.pinned, archived=c.archived
        )
        for c in conversations
    )
    messages: list[Message] = []
    spans = []
    for row, source in zip(rows, conversations, strict=True):
        start = len(messages)
        for m in source.messages:
            messages.append(
                Message(
                    conversation=row, role=m.role, content=m.content, model_name=m.model_name[:200],
                    status=m.status, finish_reason=m.finish_reason[:40], imported=True,
                )
            )
        spans.append((start, len(messages)))
    Message.objects.bulk_create(messages, batch_size=500)
    for row, source, (start, stop) in zip(rows, conversations, spans, strict=True):
        made = dict(zip((m.key for m in source.messages), messages[start:stop], strict=True))
        for m, message in zip(source.messages, messages[start:stop], strict=True):
            message.parent = made.get(m.parent) if m.parent else None
            message.created_at = message.updated_at = m.created_at or source.created_at or now
            message.finished_at = message.created_at if m.role == Message.Role.ASSISTANT else None
        row.current_leaf = made.get(source.current) if source.current else None
        if row.current_leaf is None and stop > start:
            row.current_leaf = messages[stop - 1]
        row.created_at = source.created_at or now
        row.updated_at = source.updated_at or source.created_at or now
    # bulk_create set the times to now (auto_now_add); one statement per row sets them and the tree.
    # (executemany: bulk_update builds a CASE per row in Python, 40x slower for a batch of thousands.)
    at = db_connection.ops.adapt_datetimefield_value
    with db_connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {Message._meta.db_table} SET parent_id = %s, created_at = %s, updated_at = %s, "
            "finished_at = %s WHERE id = %s",
            [(m.parent_id, at(m.created_at), at(m.updated_at), at(m.finished_at), m.pk) for m in messages],
        )
        cursor.executemany(
            f"UPDATE {Conversation._meta.db_table} SET current_leaf_id = %s, created_at = %s, updated_at = %s "
            "WHERE id = %s",
            [(c.current_leaf_id, at(c.created_at), at(c.updated_at), c.pk) for c in rows],
        )


# --- Entries --------------------------------------------------------------------------------


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
    conversation = {"chatgpt": _chatgpt, "chatweb": _chatweb, "openwebui": _openwebui}[kind](entry)
    if not conversation.messages:
        raise UnreadableEntry(f"“{conversation.title}” has no messages")
    conversation.messages = _parents_first(conversation.messages)
    return conversation


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _title(value: Any) -> str:
    title = " ".join(_text(value).split())[:TITLE_CHARS]
    return title or "Imported chat"


def _when(value: Any) -> datetime | None:
    """A time from an export: epoch seconds (or milliseconds), or ISO 8601."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            seconds = value / 1000 if value > 1e11 else value
            return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
        if isinstance(value, str) and value:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _content(value: str) -> str:
    return value[: settings.CHAT_REPLY_MAX_CHARS]


def _chatgpt(entry: dict) -> ImportedConversation:
    """ChatGPT: ``mapping`` of nodes {id, message, parent, children}; ``current_node`` is the branch shown.

    Nodes without a message (the root), hidden system messages and tool calls are left out; their
    children hang on the nearest message kept.
    """
    mapping = entry.get("mapping")
    if not isinstance(mapping, dict):
        raise UnreadableEntry("its mapping is not an object")
    key = _text(entry.get("conversation_id")) or _text(entry.get("id"))
    if not key:
        raise UnreadableEntry("it has no conversation id")
    conversation = ImportedConversation(
        format="chatgpt", key=f"chatgpt:{key}", title=_title(entry.get("title")),
        created_at=_when(entry.get("create_time")), updated_at=_when(entry.get("update_time")),
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
        role = ROLES.get(_text((message.get("author") or {}).get("role")))
        metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
        content = message.get("content") if isinstance(message.get("content"), dict) else {}
        parts = content.get("parts") if isinstance(content.get("parts"), list) else []
        text = "\n\n".join(p if isinstance(p, str) else "[attachment not imported]" for p in parts).strip()
        if not text and isinstance(content.get("text"), str):
            text = content["text"].strip()
        if role is None or not text or metadata.get("is_visually_hidden_from_conversation"):
            continue
        kept[node_id] = ImportedMessage(
            key=node_id, parent=kept_ancestor(node.get("parent")), role=role, content=_content(text),
            created_at=_when(message.get("create_time")), model_name=_text(metadata.get("model_slug")),
            status=Message.Status.COMPLETE if message.get("status") in (None, "finished_successfully")
            else Message.Status.STOPPED,
        )
    conversation.messages = list(kept.values())
    conversation.current = kept_ancestor(entry.get("current_node"))
    return conversation


def _chatgpt_order(mapping: dict) -> Iterator[tuple[str, dict]]:
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


def _chatweb(entry: dict) -> ImportedConversation:
    messages = entry.get("messages")
    if not isinstance(messages, list):
        raise UnreadableEntry("its messages are not a list")
    conversation = ImportedConversation(
        format="chatweb", key=f"chatweb:{entry.get('id')}:{_text(entry.get('created_at'))}",
        title=_title(entry.get("title")), created_at=_when(entry.get("created_at")),
        updated_at=_when(entry.get("updated_at")), pinned=entry.get("pinned") is True,
        archived=entry.get("archived") is True,
        current=str(entry["current_leaf"]) if entry.get("current_leaf") is not None else None,
    )
    for m in messages:
        if not isinstance(m, dict) or ROLES.get(_text(m.get("role"))) is None or m.get("id") is None:
            raise UnreadableEntry(f"“{conversation.title}” has a message without an id or a known role")
        conversation.messages.append(ImportedMessage(
            key=str(m["id"]), parent=str(m["parent"]) if m.get("parent") is not None else None,
            role=ROLES[m["role"]], content=_content(_text(m.get("content"))), created_at=_when(m.get("created_at")),
            model_name=_text(m.get("model")),
            status=m["status"] if m.get("status") in Message.Status.values and m["status"] != "streaming"
            else Message.Status.COMPLETE,
            finish_reason=_text(m.get("finish_reason")),
        ))
    return conversation


def _openwebui(entry: dict) -> ImportedConversation:
    """Open WebUI: ``chat.history.messages`` {id: {parentId, childrenIds, role, content, model, timestamp}}
    with ``chat.history.currentId``; older exports only have the list ``chat.messages``."""
    chat = entry["chat"]
    key = _text(entry.get("id")) or _text(chat.get("id"))
    if not key:
        raise UnreadableEntry("it has no chat id")
    conversation = ImportedConversation(
        format="openwebui", key=f"openwebui:{key}", title=_title(entry.get("title") or chat.get("title")),
        created_at=_when(entry.get("created_at") or chat.get("timestamp")), updated_at=_when(entry.get("updated_at")),
        pinned=entry.get("pinned") is True, archived=entry.get("archived") is True,
    )
    history = chat.get("history") if isinstance(chat.get("history"), dict) else {}
    nodes = history.get("messages")
    if isinstance(nodes, dict) and nodes:
        items = [n for n in nodes.values() if isinstance(n, dict)]
        conversation.current = _text(history.get("currentId")) or None
    elif isinstance(chat.get("messages"), list):
        items, previous = [], None
        for n in chat["messages"]:
            if isinstance(n, dict):
                items.append({**n, "parentId": n.get("parentId", previous)})
                previous = n.get("id")
    else:
        raise UnreadableEntry(f"“{conversation.title}” has no messages")
    for n in items:
        role = ROLES.get(_text(n.get("role")))
        if role is None or n.get("id") is None:
            continue
        conversation.messages.append(ImportedMessage(
            key=str(n["id"]), parent=str(n["parentId"]) if n.get("parentId") is not None else None, role=role,
            content=_content(_text(n.get("content"))), created_at=_when(n.get("timestamp")),
            model_name=_text(n.get("model")),
        ))
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


def import_path(run: ImportRun) -> Path:
    return Path(settings.DATA_DIR) / "imports" / f"{run.pk}.json"


def import_start(*, user: AbstractBaseUser, upload: IO[bytes], size: int, filename: str) -> tuple[ImportRun, ImportRun | None]:
    """Check the uploaded file, keep it, and import it in a thread of its own (the request returns at once).

    Returns the run (its page shows the progress) and an earlier finished run of the same file, if any.
    """
    sha256, total = import_file_check(upload=upload, size=size)
    run, before = import_run_create(user=user, filename=filename, sha256=sha256, total=total)
    path = import_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as kept:
        for chunk in iter(lambda: upload.read(1 << 20), b""):
            kept.write(chunk)
    transaction.on_commit(lambda: threading.Thread(target=_import_work, args=(run.pk,), daemon=True,
                                                   name=f"import-{run.pk}").start())
    return run, before


def _import_work(run_id: int) -> None:
    run = ImportRun.objects.select_related("user").get(pk=run_id)
    path = import_path(run)
    try:
        with path.open("rb") as source:
            import_run_process(run=run, source=source)
    finally:
        path.unlink(missing_ok=True)
        db_connection.close()

"""The streaming replies' texts, saved in one batch per interval, never once per token."""

from __future__ import annotations

import asyncio
import contextvars

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import Field
from django.utils import timezone

from conversations.chat.generation.progress import logger, saving_outage
from conversations.core.outages import (
    DATABASE_ERRORS,
    database_connection_reset,
)
from conversations.models import Message

_unsaved: dict[int, str] = {}  # reply id -> its text, not yet saved


_saver: asyncio.Task[None] | None = None


def text_save_later(message_id: int, text: str) -> None:
    """Have the reply's text saved with the next batch (the saver starts with the first reply that grows)."""
    global _saver
    _unsaved[message_id] = text
    loop = asyncio.get_running_loop()
    if _saver is None or _saver.done() or _saver.get_loop() is not loop:
        _saver = loop.create_task(_save_texts_loop(), name="generation-saver", context=contextvars.Context())


def unsaved_discard(*, message_id: int) -> None:
    """Forget a reply's unsaved text: its end saves the whole of it."""
    _unsaved.pop(message_id, None)


async def _save_texts_loop() -> None:
    """Every ``STREAM_SAVE_INTERVAL``, save the text of each reply that grew, all in one statement.

    One batch per interval instead of an UPDATE per reply keeps the process's one
    database thread free at a thousand streams, and no reader ever waits on a save.
    Texts a failed save held go back in line, unless their reply grew meanwhile.
    """
    while _unsaved:
        await asyncio.sleep(settings.STREAM_SAVE_INTERVAL)
        texts = dict(_unsaved)
        _unsaved.clear()
        if not texts:  # the replies ended meanwhile, saving their own text
            continue
        try:
            await sync_to_async(_texts_save)(texts)
        except DATABASE_ERRORS as exc:
            saving_outage.failed(exc)
            for message_id, text in texts.items():
                _unsaved.setdefault(message_id, text)
            await database_connection_reset()
        except Exception:  # noqa: BLE001 - the texts stay in memory and are saved whole when the replies end
            logger.exception("Saving %d streaming replies failed", len(texts))
        else:
            saving_outage.recovered()


def _column(name: str) -> str:
    field = Message._meta.get_field(name)
    assert isinstance(field, Field)  # a column of the table, not a relation's other side
    return field.column


def _texts_save(texts: dict[int, str]) -> None:
    """Save replies' texts so far; a reply that has ended meanwhile keeps its final text.

    One prepared UPDATE run for every reply: the ORM's ``bulk_update`` built a CASE expression
    over all of them each time, which cost the worker more than the saving itself.
    """
    now = timezone.now()
    table, content, updated_at, status, pk = (
        Message._meta.db_table,
        *(_column(name) for name in ("content", "updated_at", "status", "id")),
    )
    updated = Message._meta.get_field("updated_at").get_db_prep_value(now, connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            f'UPDATE "{table}" SET "{content}" = %s, "{updated_at}" = %s WHERE "{pk}" = %s AND "{status}" = %s',
            [(text, updated, message_id, Message.Status.STREAMING.value) for message_id, text in texts.items()],
        )

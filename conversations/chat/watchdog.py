"""Keeps streaming replies honest across worker processes.

Every few seconds each process refreshes the heartbeat (``updated_at``) of the
replies it is generating, and marks as ``interrupted`` any reply whose heartbeat
stopped (its process died), telling the sockets on that conversation. So a reply
never stays ``streaming`` forever, and loses at most the text of its last save
interval.

While the database is unreachable no worker can refresh a heartbeat, so after an
outage a watchdog judges others' heartbeats only once it has reached the database
for ``STREAM_STALE_AFTER``: live replies on other workers are not taken for dead.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from conversations.chat.generation.run import generation_running_ids
from conversations.chat.turns import messages_interrupt_orphans
from conversations.core.events import chat_done, conversation_group
from conversations.core.outages import (
    DATABASE_ERRORS,
    LAYER_ERRORS,
    Outage,
    database_connection_reset,
)
from conversations.models import Message

logger = logging.getLogger(__name__)

_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()
_outage = Outage(logger, "The stream watchdog", database=True)


def watchdog_start() -> None:
    """Run the watchdog in this event loop, once."""
    if not settings.STREAM_WATCHDOG:
        return
    loop = asyncio.get_running_loop()
    if loop not in _watchdogs:
        _watchdogs[loop] = loop.create_task(_watch(), name="stream-watchdog", context=contextvars.Context())


async def watchdog_tick(*, sweep: bool = True) -> list[int]:
    """One heartbeat and, with ``sweep``, one sweep; returns the ids of the replies marked interrupted."""
    running = generation_running_ids()
    if running:
        await Message.objects.filter(pk__in=running, status=Message.Status.STREAMING).aupdate(updated_at=timezone.now())
    if not sweep:
        return []
    stale_after = timedelta(seconds=settings.STREAM_STALE_AFTER)
    orphans = await sync_to_async(messages_interrupt_orphans)(stale_after=stale_after)
    layer = get_channel_layer()
    for message_id, conversation_id in orphans:
        logger.warning("Reply %s lost its worker; marked interrupted", message_id)
        try:
            await layer.group_send(conversation_group(conversation_id), chat_done(message_id=message_id))
        except LAYER_ERRORS as exc:  # its tabs are sent the ended reply when they reconnect
            logger.warning("The tabs of reply %s could not be told (%s)", message_id, type(exc).__name__)
    return [message_id for message_id, _ in orphans]


async def _watch() -> None:
    reachable_since = float("-inf")  # when the database answered again after it last failed
    while True:
        await asyncio.sleep(settings.STREAM_HEARTBEAT_INTERVAL)
        try:
            await watchdog_tick(sweep=time.monotonic() - reachable_since >= settings.STREAM_STALE_AFTER)
        except DATABASE_ERRORS as exc:
            _outage.failed(exc)
            reachable_since = time.monotonic()
            await database_connection_reset()
        except Exception:
            logger.exception("Stream watchdog tick failed; trying again next interval")
        else:
            _outage.recovered()


class WatchdogMiddleware:
    """ASGI middleware: the first connection a worker serves starts its watchdog."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        watchdog_start()
        return await self.app(scope, receive, send)

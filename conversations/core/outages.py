"""What a worker does while PostgreSQL or Redis does not answer: retry quietly, log the outage once.

A restart of either is a few seconds of errors on every connection. Work that can
wait (saving a reply's text, a heartbeat, a delta) keeps what it has and tries
again with a growing pause; a websocket handshake that needs them is closed with
``OUTAGE_CLOSE_CODE``, which the page explains and reconnects after, instead of
answering HTTP 500.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections
from redis.exceptions import RedisError

DATABASE_ERRORS = (OperationalError, InterfaceError)
# What a Redis channel layer raises when Redis is down, restarting or unreachable.
LAYER_ERRORS = (RedisError, OSError)
SERVICE_ERRORS = DATABASE_ERRORS + LAYER_ERRORS

# Servers may only close with 1000 or 3000-4999 (RFC 6455): 4503 is "try again later", after 503.
OUTAGE_CLOSE_CODE = 4503
RETRY_FIRST, RETRY_MAX = 0.25, 5.0

_database_failed_at: float | None = None  # the last database failure not followed by a success


def database_outage_mark(*, down: bool) -> None:
    """Note that the database just failed (``down``) or answered."""
    global _database_failed_at
    _database_failed_at = time.monotonic() if down else None


def database_outage_recent() -> bool:
    """Whether the database failed in the last few seconds and has not answered since.

    Sockets, generations, the saver and the watchdog share a process's one sync thread
    for the database, and during an outage each call waits for the pool's timeout: a
    handshake queued behind them would outlast Daphne's handshake timeout, so while this
    holds handshakes are answered at once.
    """
    return _database_failed_at is not None and time.monotonic() - _database_failed_at < RETRY_MAX


def retry_delay(*, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (from 0): doubling, capped."""
    delay: float = RETRY_FIRST * 2**attempt  # int ** int is typed Any: a negative power is a float
    return min(delay, RETRY_MAX)


async def database_connection_reset() -> None:
    """Drop the shared sync thread's database connection if a failure broke it.

    Generations, the saver and the watchdog keep one connection on that thread, and
    Django only replaces a broken one between requests: without this, every retry after
    an outage would fail on the dead connection, however long ago the database came back.
    """
    await sync_to_async(close_old_connections)()


class Outage:
    """Logs one line when a task starts failing on a service and one when it works again.

    With ``database``, its failures and recoveries also tell ``database_outage_recent``.
    """

    def __init__(self, logger: logging.Logger, task: str, *, database: bool = False) -> None:
        self.logger = logger
        self.task = task
        self.database = database
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if self.database:
            database_outage_mark(down=True)
        if not self.down:
            self.down = True
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            self.logger.warning("%s failed (%s: %s); retrying until it works", self.task, type(exc).__name__, reason)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            if self.database:
                database_outage_mark(down=False)
            self.logger.warning("%s works again", self.task)


class SocketOutageMiddleware:
    """ASGI middleware for websockets: a handshake or socket that meets an outage is closed with 4503.

    Sessions and users are read from the database before the consumer runs, and the
    consumer joins its channel-layer group as it connects; either failing would
    otherwise answer the handshake with HTTP 500, and a socket whose channel layer
    fails later would be closed with 1011 and a traceback.
    """

    logger = logging.getLogger(__name__)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if database_outage_recent():
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": OUTAGE_CLOSE_CODE})
            return None
        state = {"accepted": False, "closed": False}

        async def tracked_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.accept":
                state["accepted"] = True
                database_outage_mark(down=False)  # the handshake read the session, user and conversation
            elif message["type"] == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            return await self.app(scope, receive, tracked_send)
        except SERVICE_ERRORS as exc:
            if isinstance(exc, DATABASE_ERRORS):
                database_outage_mark(down=True)
            self.logger.warning("Socket %s closed: %s during an outage", scope.get("path", ""), type(exc).__name__)
            if state["closed"]:
                return None
            if not state["accepted"]:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": OUTAGE_CLOSE_CODE})

"""What a worker does while PostgreSQL or Redis does not answer: retry quietly, log the outage once.

A restart of either is a few seconds of errors on every connection. Work that can
wait (saving a reply's text, a heartbeat, a delta) keeps what it has and tries
again with a growing pause; a websocket handshake that needs them is closed with
``OUTAGE_CLOSE_CODE`` (1013, "try again later"), which the page explains and
reconnects after, instead of answering HTTP 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from redis.exceptions import RedisError

DATABASE_ERRORS = (OperationalError, InterfaceError)
# What a Redis channel layer raises when Redis is down, restarting or unreachable.
LAYER_ERRORS = (RedisError, OSError)
SERVICE_ERRORS = DATABASE_ERRORS + LAYER_ERRORS

OUTAGE_CLOSE_CODE = 1013
RETRY_FIRST, RETRY_MAX = 0.25, 5.0


def retry_delay(*, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (from 0): doubling, capped."""
    return min(RETRY_FIRST * 2**attempt, RETRY_MAX)


class Outage:
    """Logs one line when a task starts failing on a service and one when it works again."""

    def __init__(self, logger: logging.Logger, task: str) -> None:
        self.logger = logger
        self.task = task
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            self.logger.warning("%s failed (%s); retrying until it works", self.task, type(exc).__name__)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            self.logger.warning("%s works again", self.task)


class SocketOutageMiddleware:
    """ASGI middleware for websockets: a handshake or socket that meets an outage is closed with 1013.

    Sessions and users are read from the database before the consumer runs, and the
    consumer joins its channel-layer group as it connects; either failing would
    otherwise answer the handshake with HTTP 500, and a socket whose channel layer
    fails later would be closed with 1011 and a traceback.
    """

    logger = logging.getLogger(__name__)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        state = {"accepted": False, "closed": False}

        async def tracked_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.accept":
                state["accepted"] = True
            elif message["type"] == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            return await self.app(scope, receive, tracked_send)
        except SERVICE_ERRORS as exc:
            self.logger.warning("Socket %s closed: %s during an outage", scope.get("path", ""), type(exc).__name__)
            if state["closed"]:
                return None
            if not state["accepted"]:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": OUTAGE_CLOSE_CODE})

"""Readiness of this process's dependencies, for load balancers and orchestrators."""

import asyncio

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

CHECK_TIMEOUT = 3.0


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_ping() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    await layer.receive(channel)


async def readiness_check() -> dict[str, str]:
    """``{"database": "ok" | <error>, "channel_layer": "ok" | <error>}``."""
    checks = {"database": sync_to_async(_database_ping)(), "channel_layer": _channel_layer_ping()}
    results = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await check
            results[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            results[name] = f"{type(exc).__name__}: {exc}"[:200]
    return results

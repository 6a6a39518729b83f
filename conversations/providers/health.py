"""Readiness of this process's dependencies, for load balancers and orchestrators."""

import asyncio
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from conversations.providers.localmodel import SupervisorState, port_open

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
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
            results[name] = f"{type(exc).__name__}: {exc}"[:200]
    return results


@dataclass(frozen=True)
class LocalModelStatus:
    """The bundled model's state: ``off``, ``up``, ``starting``, ``restarting`` or ``down``."""

    state: str
    restarts: int = 0
    last_exit: str = ""  # how its server last ended, when its supervisor runs on this machine

    def __str__(self) -> str:
        """``up (2 restarts, last: killed by SIGSEGV)``, for the admin."""
        if not self.restarts:
            return self.state
        return f"{self.state} ({self.restarts} restart{'s' if self.restarts != 1 else ''}, last: {self.last_exit})"


def local_model_status() -> LocalModelStatus:
    """``up`` when the model's port accepts connections; otherwise what its supervisor last wrote.

    A local model run elsewhere (another container) has no supervisor file here:
    it is ``up`` or ``down``.
    """
    if not settings.LOCAL_MODEL:
        return LocalModelStatus("off")
    supervisor = SupervisorState.read(settings.LOCAL_MODEL_STATE_FILE)
    restarts, last_exit = (supervisor.restarts, supervisor.last_exit) if supervisor else (0, "")
    if port_open(settings.LOCAL_MODEL_HOST, settings.LOCAL_MODEL_PORT):
        state = "up"
    elif supervisor and supervisor.state in ("starting", "restarting"):
        state = supervisor.state
    else:
        state = "down"
    return LocalModelStatus(state, restarts, last_exit)

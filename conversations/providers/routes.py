"""Which deployment of a chat model a completion goes to, and which ones to skip for now.

A model's route is its own provider (priority 0, weight 1) and its enabled
``Deployment`` rows on enabled providers, ordered by priority with a weighted draw
among equal priorities. A deployment that failed ``ROUTING["COOLDOWN_FAILURES"]`` times
within ``FAILURE_WINDOW`` seconds cools down for ``COOLDOWN_SECONDS``, and one past its
``rpm``/``tpm`` this minute waits for the next: both move to the end of the order
(tried only when all else failed). That state lives in this process, or in Redis when
``REDIS_URL`` is set so that every worker agrees. A model with a single deployment and
no limits keeps no state at all: its calls go where they always went.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings

if TYPE_CHECKING:
    import redis.asyncio

from conversations.core.rowcache import rowcache_get, rowcache_load
from conversations.models import ChatModel, Deployment
from conversations.providers.completions import (
    CompletionError,
    Upstream,
    completion_create,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """One deployment: where its completions go and how it ranks."""

    key: str  # stable id for its cooldown and counters: never shown to users
    provider: str
    upstream: Upstream
    priority: int = 0
    weight: int = 1
    rpm: int | None = None
    tpm: int | None = None

    @property
    def label(self) -> str:
        """Provider and model id, as admins know the deployment."""
        return f"{self.provider} / {self.upstream.model}"


def routes_of(model: ChatModel) -> list[Route]:
    """The deployments of ``model`` (cached per ``ROW_CACHE_SECONDS``), its own provider first."""
    return rowcache_load(("routes", model.pk), lambda: _routes_load(model))


async def routes_aof(model: ChatModel) -> list[Route]:
    """``routes_of`` from the event loop: the database thread only when the cache has none."""
    return rowcache_get(("routes", model.pk)) or await sync_to_async(routes_of)(model)


def _routes_load(model: ChatModel) -> list[Route]:
    """The model's own provider, then its enabled deployments on enabled providers."""
    own = Route(key=f"m{model.pk}", provider=model.provider.name, upstream=Upstream.of(model))
    rows = Deployment.objects.filter(model_id=model.pk, enabled=True, provider__enabled=True).select_related("provider")
    more = [
        Route(
            key=f"d{row.pk}",
            provider=row.provider.name,
            upstream=Upstream(base_url=row.provider.base_url, api_key=row.provider.api_key, model=row.upstream_model),
            priority=row.priority,
            weight=row.weight,
            rpm=row.rpm,
            tpm=row.tpm,
        )
        for row in rows
    ]
    return [own, *more]


async def routes_ordered(routes: list[Route], *, tokens: int) -> list[Route]:
    """The order to try ``routes`` in: by priority, weighted among equals, those resting last.

    Counts this call (``tokens`` its estimate) against the limits of the first route
    that is not resting, the one most likely to answer it.
    """
    if len(routes) == 1 and routes[0].rpm is None and routes[0].tpm is None:
        return routes
    ordered = []
    for priority in sorted({r.priority for r in routes}):
        ordered += _weighted_shuffle([r for r in routes if r.priority == priority])
    resting = await _state().resting(ordered)
    ready = [r for r in ordered if r.key not in resting]
    if ready and (ready[0].rpm is not None or ready[0].tpm is not None):
        await _state().count(ready[0], tokens=tokens)
    return ready + [r for r in ordered if r.key in resting]


async def route_failed(route: Route) -> None:
    """Count a failure of ``route``; enough of them in the window start its cooldown."""
    try:
        cooled = await _state().failed(route)
    except Exception:  # noqa: BLE001 - the store being away must not fail the call
        logger.warning("Could not record a failure of deployment %s", route.key, exc_info=True)
        return
    if cooled:
        logger.warning("Deployment %s (%s) cools down after repeated failures", route.key, route.label)


async def routes_test(*, model: ChatModel) -> list[tuple[str, str, bool]]:
    """Send each deployment of ``model`` a one-token request: (deployment, its latency or error, whether it answered).

    For admins: the errors may name what the provider said. Cooldowns are neither consulted nor changed.
    """
    results = []
    for route in await routes_aof(model):
        started = time.monotonic()
        try:
            await completion_create(
                upstream=route.upstream,
                payload={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
                retries=0,
            )
        except CompletionError as exc:
            results.append((route.label, f"failed ({exc.status or 'no answer'}): {exc.message}", False))
        else:
            results.append((route.label, f"{round((time.monotonic() - started) * 1000)} ms", True))
    return results


def _weighted_shuffle(routes: list[Route]) -> list[Route]:
    """Routes in a random order where each comes first in proportion to its weight."""
    if len(routes) < 2:
        return routes
    return sorted(routes, key=lambda r: random.random() ** (1 / r.weight), reverse=True)


class _LocalState:
    """Failures, cooldowns and this minute's counts, in this process."""

    def __init__(self) -> None:
        self.failures: dict[str, deque[float]] = {}
        self.cooled_until: dict[str, float] = {}
        self.minute: dict[str, tuple[int, int, int]] = {}  # key -> (minute, requests, tokens)

    async def resting(self, routes: list[Route]) -> set[str]:
        now = time.monotonic()
        minute = int(time.time() // 60)
        out = set()
        for r in routes:
            if self.cooled_until.get(r.key, 0) > now:
                out.add(r.key)
                continue
            at, requests, tokens = self.minute.get(r.key, (minute, 0, 0))
            if at == minute and _over(r, requests, tokens):
                out.add(r.key)
        return out

    async def count(self, route: Route, *, tokens: int) -> None:
        minute = int(time.time() // 60)
        at, requests, used = self.minute.get(route.key, (minute, 0, 0))
        if at != minute:
            requests, used = 0, 0
        self.minute[route.key] = (minute, requests + 1, used + tokens)

    async def failed(self, route: Route) -> bool:
        conf = settings.ROUTING
        now = time.monotonic()
        recent = self.failures.setdefault(route.key, deque())
        recent.append(now)
        while recent and recent[0] <= now - conf["FAILURE_WINDOW"]:
            recent.popleft()
        if len(recent) < conf["COOLDOWN_FAILURES"]:
            return False
        recent.clear()
        self.cooled_until[route.key] = now + conf["COOLDOWN_SECONDS"]
        return True


class _RedisState:
    """The same state in Redis, shared by every worker: keys expire by themselves."""

    def __init__(self) -> None:
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def prefix(self) -> str:
        """The channel layer's Redis prefix (``CHANNEL_LAYER_PREFIX``), so installations sharing a Redis stay apart."""
        config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
        prefix = config.get("prefix", "chatweb") if isinstance(config, dict) else "chatweb"  # always a dict
        return f"{prefix}:route:"

    def _client(self) -> redis.asyncio.Redis:
        """The client bound to the running loop."""
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.asyncio.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
            self._clients[loop] = client
        return client

    async def resting(self, routes: list[Route]) -> set[str]:
        minute = int(time.time() // 60)
        keys = []
        for r in routes:
            keys += [f"{self.prefix}{kind}:{r.key}" for kind in ("cool", f"rpm:{minute}", f"tpm:{minute}")]
        try:
            values = await self._client().mget(keys)
        except Exception:  # noqa: BLE001 - without Redis, nothing rests
            logger.warning("Could not read deployment cooldowns from Redis", exc_info=True)
            return set()
        out = set()
        for i, r in enumerate(routes):
            cool, requests, tokens = values[3 * i : 3 * i + 3]
            if cool is not None or _over(r, int(requests or 0), int(tokens or 0)):
                out.add(r.key)
        return out

    async def count(self, route: Route, *, tokens: int) -> None:
        minute = int(time.time() // 60)
        rpm, tpm = f"{self.prefix}rpm:{minute}:{route.key}", f"{self.prefix}tpm:{minute}:{route.key}"
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                # One command a call: redis-py types a pipeline's commands as awaitables, not the pipeline.
                pipe.incr(rpm)
                pipe.expire(rpm, 120)
                pipe.incrby(tpm, tokens)
                pipe.expire(tpm, 120)
                await pipe.execute()
        except Exception:  # noqa: BLE001
            logger.warning("Could not count a call of deployment %s in Redis", route.key, exc_info=True)

    async def failed(self, route: Route) -> bool:
        conf = settings.ROUTING
        failures = f"{self.prefix}fail:{route.key}"
        async with self._client().pipeline(transaction=True) as pipe:
            window = max(1, round(conf["FAILURE_WINDOW"]))
            pipe.incr(failures)
            pipe.expire(failures, window, nx=True)
            count, _ = await pipe.execute()
        if count < conf["COOLDOWN_FAILURES"]:
            return False
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}cool:{route.key}", 1, px=round(conf["COOLDOWN_SECONDS"] * 1000))
            pipe.delete(failures)
            await pipe.execute()
        return True


def _over(route: Route, requests: int, tokens: int) -> bool:
    return (route.rpm is not None and requests >= route.rpm) or (route.tpm is not None and tokens >= route.tpm)


_states: dict[str, _LocalState | _RedisState] = {}


def _state() -> _LocalState | _RedisState:
    """This process's store: Redis when ``REDIS_URL`` is set, else memory."""
    kind = "redis" if settings.REDIS_URL else "local"
    if kind not in _states:
        _states[kind] = _RedisState() if kind == "redis" else _LocalState()
    return _states[kind]


def routing_state_reset() -> None:
    """Forget this process's failures, cooldowns and counts (Redis keys expire by themselves)."""
    _states.clear()

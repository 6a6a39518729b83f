"""The call to the provider: the model's deployments tried in order, falling back to the next when one
fails before any content reached the caller, with each failure counted and a stream observed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from django.utils import timezone

from conversations.core import metrics
from conversations.core.errors import DeploymentsExhausted, ModelUnavailable
from conversations.ledger.metering.log import completion_logger
from conversations.ledger.metering.metered import Metered
from conversations.providers.completions import (
    CompletionError,
    UpstreamConnectionError,
    UpstreamTimeout,
    completion_create,
    completion_stream,
)
from conversations.providers.routes import (
    Route,
    route_failed,
    routes_aof,
    routes_ordered,
)

# Failures that are the caller's: another deployment would refuse the request the same way.
CALLER_FAULTS = frozenset({400, 413, 422})


def _fallback_worthy(exc: CompletionError) -> bool:
    """Whether another deployment may answer where this one failed."""
    return exc.status not in CALLER_FAULTS


async def _routes(metered: Metered) -> list[Route]:
    """The deployments to try, in order; ``ModelUnavailable`` when the model was deleted or turned off since."""
    model = metered.model
    if model is None or not model.enabled or not model.provider.enabled:
        raise ModelUnavailable(f"The model “{metered.name}” is no longer available.", name=metered.name)
    return await routes_ordered(await routes_aof(model), tokens=metered.tokens)


async def _failed(metered: Metered, route: Route, exc: CompletionError) -> None:
    """Note a deployment's failure on the completion, and towards its cooldown."""
    metered.attempts.append(
        {"deployment": route.label, "status": exc.status, "error": exc.message, "at": timezone.now().isoformat()}
    )
    _error_count(route, exc)
    completion_logger.warning(
        "deployment failed",
        extra={
            "request_id": metered.request_id,
            "message_id": metered.message_id,
            "model": metered.name,
            "deployment": route.key,
            "status": exc.status,
        },
    )
    await route_failed(route)


def _error_count(route: Route | None, exc: CompletionError) -> None:
    """Count a deployment's failure in the metrics, by its kind."""
    if isinstance(exc, UpstreamTimeout):
        kind = "timeout"
    elif isinstance(exc, UpstreamConnectionError):
        kind = "connection"
    elif exc.status == 429:
        kind = "rate_limited"
    elif exc.status and exc.status >= 500:
        kind = "server_error"
    elif exc.status:
        kind = "client_error"
    else:
        kind = "other"
    metrics.upstream_errors.labels(route.label if route else "none", kind).inc()


def _exhausted(metered: Metered) -> DeploymentsExhausted:
    metered.route = None  # none answered
    return DeploymentsExhausted(
        f"The model `{metered.name}` is unavailable just now: all of its providers failed. Try again shortly."
    )


async def metering_create(*, metered: Metered, payload: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming completion from the first deployment that answers it."""
    routes = await _routes(metered)
    for index, route in enumerate(routes):
        metered.route = route
        last = index == len(routes) - 1
        try:
            return await completion_create(upstream=route.upstream, payload=payload, retries=None if last else 0)
        except CompletionError as exc:
            if len(routes) == 1 or not _fallback_worthy(exc):
                _error_count(route, exc)
                raise
            await _failed(metered, route, exc)
    raise _exhausted(metered)


async def metering_stream(*, metered: Metered, payload: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    """A streamed completion's chunks, from the first deployment that starts one with content."""
    routes = await _routes(metered)
    if len(routes) == 1:
        metered.route = routes[0]
        return _observed(metered, completion_stream(upstream=routes[0].upstream, payload=payload))
    return _observed(metered, _fallback_stream(metered, routes, payload))


async def _observed(
    metered: Metered, chunks: AsyncGenerator[dict[str, Any], None]
) -> AsyncGenerator[dict[str, Any], None]:
    """Pass a stream's chunks on, counted in the metrics: live while read, when its first content came,
    and a failure of the deployment reading it (failures before content that fell back are counted there)."""
    source = metered.source
    metrics.streams_live.labels(source).inc()
    try:
        async for chunk in chunks:
            if metered.first_content_at is None and _has_content(chunk):
                metered.first_content_at = time.monotonic()
            yield chunk
    except CompletionError as exc:
        _error_count(metered.route, exc)
        raise
    finally:
        metrics.streams_live.labels(source).dec()
        await chunks.aclose()


async def _fallback_stream(
    metered: Metered, routes: list[Route], payload: dict[str, Any]
) -> AsyncGenerator[dict[str, Any], None]:
    """Hold each deployment's chunks until one carries content; a failure before that tries the next."""
    for index, route in enumerate(routes):
        metered.route = route
        last = index == len(routes) - 1
        chunks = completion_stream(upstream=route.upstream, payload=payload, retries=None if last else 0)
        held = []
        try:
            async for chunk in chunks:
                held.append(chunk)
                if _has_content(chunk):
                    break
        except CompletionError as exc:
            await chunks.aclose()
            if not _fallback_worthy(exc):
                raise
            await _failed(metered, route, exc)
            continue
        async with contextlib.aclosing(chunks):
            for chunk in held:
                yield chunk
            async for chunk in chunks:
                yield chunk
        return
    raise _exhausted(metered)


def _has_content(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries something of the reply: text, a refusal, a tool call, or its end."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("refusal") or delta.get("tool_calls") or delta.get("function_call"):
            return True
        if choice.get("finish_reason"):
            return True
    return bool(chunk.get("usage"))

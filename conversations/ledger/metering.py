"""One completion's life, the same for the chat and /v1: route, reserve, call, settle, store, log.

The chat generation (``services.generation``) and the gateway (``services.gateway``)
both run a completion through here. A ``Metered`` completion knows its model, its
usage reservation and the deployments to try (``services.routing``). The call falls
back to the next deployment when one fails before any content reached the caller: it
could not connect or timed out, answered 429, 5xx or another failure that is not the
caller's (400, 413 and 422 are, and are not retried elsewhere), or its stream broke
before its first content. Once content has been passed on, a failure ends the
completion. When every deployment of a model with several failed, the model is
unavailable for now (``DeploymentsExhausted``); with a single one, its own error is
kept, as it always was.

Every completion ends settled (its usage record names the deployment that answered),
optionally stored (with the attempts that failed), and logged as one
``chatweb.completions`` line with one status vocabulary: ``completed``, ``error``,
``stopped``, ``interrupted``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from conversations.accounts.access import (
    access_cached,
    access_require,
    model_unavailable,
)
from conversations.core import metrics
from conversations.core.errors import DeploymentsExhausted, ModelUnavailable
from conversations.core.rowcache import rowcache_get, rowcache_set
from conversations.ledger.usage import (
    usage_reported,
    usage_reserve,
    usage_reserve_cached,
    usage_settle,
)
from conversations.models import (
    ApiKey,
    ChatModel,
    Message,
    StoredCompletion,
    UsageRecord,
)
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
    routes_of,
    routes_ordered,
)
from conversations.providers.tokens import (
    messages_tokens_count,
    messages_tokens_guess,
    tokens_count,
)

completion_logger = logging.getLogger("chatweb.completions")

Status = StoredCompletion.Status
# Failures that are the caller's: another deployment would refuse the request the same way.
CALLER_FAULTS = frozenset({400, 413, 422})
# A chat reply's state, as a completion's status.
TURN_STATUS = {
    Message.Status.COMPLETE: Status.COMPLETED,
    Message.Status.ERROR: Status.ERROR,
    Message.Status.STOPPED: Status.STOPPED,
    Message.Status.INTERRUPTED: Status.INTERRUPTED,
}


@dataclass
class Metered:
    """A completion under way: whose, of which model, its reservation, and where it went."""

    model: ChatModel | None  # None: a chat reply whose model was deleted since
    name: str  # the chat model's name, as users and the ledger know it
    user_id: int
    source: str  # StoredCompletion.Source
    record: UsageRecord | None
    request_id: str = ""
    message_id: int | None = None
    started: float = field(default_factory=time.monotonic)
    first_content_at: float | None = None  # when a stream's first content came
    route: Route | None = None  # the deployment that answered, or was tried last
    attempts: list[dict[str, Any]] = field(default_factory=list)  # the deployments that failed

    @property
    def latency_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)

    @property
    def tokens(self) -> int:
        """The reservation's estimate, which a deployment's tokens-per-minute counts."""
        return (self.record.prompt_tokens + self.record.completion_tokens) if self.record else 0


def metering_model(*, name: str, api_key: ApiKey | None = None) -> ChatModel:
    """The enabled chat model called ``name`` or aliased so, or ``ModelUnavailable``; with ``api_key``,
    also when the key (or its user) may not use it, in the same words."""
    model = rowcache_get(("model", name))
    if model is None:
        model = (
            ChatModel.objects.filter(Q(name=name) | Q(aliases__name=name), enabled=True, provider__enabled=True)
            .select_related("provider")
            .first()
        )
        if model is None:
            raise model_unavailable(name)
        rowcache_set(("model", name), model)
    if api_key is not None:
        access_require(user=api_key.user, model=model, name=name, api_key=api_key)
    return model


async def metering_begin_api(*, body: dict[str, Any], api_key: ApiKey, request_id: str) -> Metered:
    """A /v1 call's model, checked against the key's access, and its usage reservation (or ``QuotaExceeded``).

    When the model, the user's access, prices and limits are cached and neither the user
    nor the key has limits, this makes no trip to the database thread: the call's record
    is written when it ends.
    """
    model = rowcache_get(("model", body["model"]))
    access = access_cached(user_id=api_key.user_id)
    record = None
    if model is not None and access is not None and not api_key.has_limits:
        access_require(user=api_key.user, model=model, name=body["model"], api_key=api_key, access=access)
        record = usage_reserve_cached(api_key=api_key, model=model.name, **_reservation_args(body, model, api_key))
    if record is None:
        model, record = await sync_to_async(_model_and_reservation)(body=body, api_key=api_key)
    return Metered(
        model=model, name=model.name, user_id=api_key.user_id, source=StoredCompletion.Source.API, record=record,
        request_id=request_id,
    )


def _reservation_args(body: dict[str, Any], model: ChatModel, api_key: ApiKey) -> dict[str, Any]:
    """The call's worst case: each of its ``n`` choices may write its output limit, or the default reserve."""
    output_limit = body.get("max_completion_tokens") or body.get("max_tokens") or settings.USAGE_RESERVE_OUTPUT_TOKENS
    return {
        "user": api_key.user,
        "provider": model.provider.name,
        "prompt_tokens": messages_tokens_guess(body["messages"]),
        "max_output_tokens": output_limit * (body.get("n") or 1),
    }


def _model_and_reservation(*, body: dict[str, Any], api_key: ApiKey) -> tuple[ChatModel, UsageRecord]:
    """The requested model and the call's usage reservation, in one trip to the database thread."""
    model = metering_model(name=body["model"], api_key=api_key)
    record = usage_reserve(api_key=api_key, model=model.name, defer=True, **_reservation_args(body, model, api_key))
    routes_of(model)  # loaded here too, on the database thread
    return model, record


def metering_reserve_turn(
    *,
    user: AbstractBaseUser,
    model: ChatModel,
    reply: Message,
    history: list[dict[str, Any]],
    max_output_tokens: int | None,
) -> UsageRecord:
    """Reserve a chat reply's worst case (the ``max_tokens`` it is sent with, else the default), or
    ``QuotaExceeded``."""
    return usage_reserve(
        user=user,
        model=model.name,
        provider=model.provider.name,
        prompt_tokens=messages_tokens_guess(history),
        max_output_tokens=max_output_tokens,
        message=reply,
    )


def metering_for_turn(*, message: Message) -> Metered:
    """The chat reply ``message`` (with its conversation, model and provider) as a metered completion."""
    model = message.conversation.model
    if model is not None:
        routes_of(model)  # loaded here, on the database thread
    return Metered(
        model=model, name=message.model_name, user_id=message.conversation.user_id,
        source=StoredCompletion.Source.CHAT, record=_turn_reservation(message),
        message_id=message.pk,
    )


def _turn_reservation(message: Message) -> UsageRecord | None:
    """The usage record of the reply's call under way: its latest (a continued reply has one per call)."""
    return UsageRecord.objects.filter(message_id=message.pk).order_by("-created_at", "-id").first()


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
        extra={"request_id": metered.request_id, "message_id": metered.message_id, "model": metered.name,
               "deployment": route.key, "status": exc.status},
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


async def metering_stream(*, metered: Metered, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A streamed completion's chunks, from the first deployment that starts one with content."""
    routes = await _routes(metered)
    if len(routes) == 1:
        metered.route = routes[0]
        return _observed(metered, completion_stream(upstream=routes[0].upstream, payload=payload))
    return _observed(metered, _fallback_stream(metered, routes, payload))


async def _observed(metered: Metered, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
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
) -> AsyncIterator[dict[str, Any]]:
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


def metering_settle(
    *,
    metered: Metered,
    usage: dict[str, Any] | None,
    text: str,
    messages: list[dict[str, Any]],
    stored: StoredCompletion | None = None,
) -> UsageRecord | None:
    """Settle the reservation to what was used, naming the deployment that answered.

    The provider's counts when it reported them, else ``text`` (all that was generated)
    and ``messages`` counted here and marked estimated. ``stored``, when given, is
    saved first and linked. Callers hold the transaction that groups these writes.
    """
    if stored is not None:
        metering_store(metered=metered, stored=stored)
    record = metered.record
    if record is None:
        return None
    if metered.route is not None:
        record.provider, record.upstream_model = metered.route.provider, metered.route.upstream.model
    counted = "" if usage_reported(usage) else text
    return usage_settle(
        record=record,
        usage=usage,
        prompt_tokens_estimate=messages_tokens_count(messages) if counted else 0,
        completion_tokens_estimate=tokens_count(counted),
        stored_completion=stored,
    )


def metering_store(*, metered: Metered, stored: StoredCompletion) -> None:
    """Keep ``stored`` (unsaved), naming the deployment that answered and the attempts that failed before."""
    if metered.route is not None:
        stored.provider, stored.upstream_model = metered.route.provider, metered.route.upstream.model
    stored.attempts = metered.attempts
    stored.save(force_insert=True)


def metering_log(
    *, metered: Metered, status: str, prompt_tokens: int | None, completion_tokens: int | None
) -> None:
    """The completion's one ``chatweb.completions`` line (ids, model, status, latency, tokens; never content),
    and its counts in the metrics."""
    record = metered.record
    metrics.completion_observe(
        model=metered.name, deployment=metered.route.label if metered.route else "none", source=metered.source,
        status=status, user_id=metered.user_id, seconds=time.monotonic() - metered.started,
        first_token_seconds=metered.first_content_at - metered.started if metered.first_content_at else None,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        cost_usd=record.cost if record is not None and record.state == UsageRecord.State.SETTLED else None,
    )
    ids = {"request_id": metered.request_id} if metered.request_id else {"message_id": metered.message_id}
    completion_logger.info(
        "completion",
        extra={
            **ids,
            "user_id": metered.user_id,
            "model": metered.name,
            "source": metered.source,
            "status": status,
            "latency_ms": metered.latency_ms,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "attempts": len(metered.attempts) + (metered.route is not None),
        },
    )

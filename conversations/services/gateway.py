"""The OpenAI-compatible gateway behind /v1: route a request to its provider and relay the answer.

Requests arrive validated (``api.validation``). The model name resolves through
chatweb's model table; the body passes through to the provider except the fields
chatweb handles itself (``store``, ``metadata``). Answers carry chatweb's own
``chatcmpl-`` id and the model name the client asked for. Streams are normalised
to what the official SDKs expect: ``role`` only in a choice's first delta, a tool
call's ``id``, ``type`` and ``function.name`` only in its first delta, and the
usage chunk only for a client that asked for it.

Each completion logs one line (ids, model, status, latency, tokens: never content).
With ``store: true`` the finished completion is kept (``services.stored``): for a
stream, the one assembled from its chunks, saved before ``[DONE]`` once the stream
has ended normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from ..api.validation import ApiError
from ..models import ApiKey, ChatModel, StoredCompletion, UsageRecord
from .completions import CompletionError, Upstream, completion_create, completion_stream
from .rowcache import rowcache_get, rowcache_set
from .stored import CompletionAssembler, completion_id, stored_completion_build
from .tokens import messages_tokens_count, messages_tokens_guess, tokens_count
from .usage import QuotaExceeded, usage_reported, usage_reserve, usage_reserve_cached, usage_settle

completion_logger = logging.getLogger("chatweb.completions")
Finish = Callable[..., Awaitable[None]]

# Fields chatweb acts on itself rather than passing to the provider.
LOCAL_FIELDS = ("model", "stream", "store", "metadata")


async def gateway_models() -> list[ChatModel]:
    """Models a key's user may call."""
    return [m async for m in ChatModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")]


async def gateway_model(*, name: str) -> ChatModel:
    return await sync_to_async(_model)(name)


def _model(name: str) -> ChatModel:
    model = rowcache_get(("model", name))
    if model is not None:
        return model
    model = ChatModel.objects.filter(name=name, enabled=True, provider__enabled=True).select_related("provider").first()
    if model is None:
        raise ApiError(
            f"The model `{name}` does not exist or you do not have access to it.",
            status=404,
            param="model",
            code="model_not_found",
        )
    return rowcache_set(("model", name), model)


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in LOCAL_FIELDS}


def api_error_from(exc: CompletionError) -> ApiError:
    """The provider's failure, as the client of /v1 should see it; a 429 always says when to retry."""
    headers = None
    if exc.retry_after is not None or exc.status == 429:
        headers = {"Retry-After": str(max(1, round(exc.retry_after or 0)))}
    return ApiError(
        exc.message,
        status=exc.status or 502,
        type=exc.type,
        param=exc.param,
        code=exc.code,
        headers=headers,
    )


async def _begin(*, body: dict[str, Any], api_key: ApiKey, request_id: str) -> tuple[ChatModel, Finish]:
    """Resolve the model and reserve the call's usage (or answer 429); returns the model and how to end the call.

    When the model, prices and limits are cached and the user has no limits, this
    makes no trip to the database thread: the call's record is written when it ends.
    """
    model = rowcache_get(("model", body["model"]))
    record = None
    if model is not None:
        record = usage_reserve_cached(api_key=api_key, model=model.name, **_reservation_args(body, model, api_key))
    if record is None:
        try:
            model, record = await sync_to_async(_model_and_reservation)(body=body, api_key=api_key)
        except QuotaExceeded as exc:
            raise api_error_from_quota(exc) from exc
    finish = functools.partial(
        _finished, body=body, api_key=api_key, model=model, started=time.monotonic(),
        request_id=request_id, record=record,
    )
    return model, finish


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
    model = _model(body["model"])
    record = usage_reserve(
        api_key=api_key, model=model.name, defer=True, **_reservation_args(body, model, api_key)
    )
    return model, record


async def _finished(
    *,
    body: dict[str, Any],
    api_key: ApiKey,
    model: ChatModel,
    started: float,
    request_id: str,
    record: UsageRecord,
    completion: dict[str, Any] | None,
    partial: dict[str, Any] | None = None,
) -> None:
    """End a call: settle its usage, log one line, and keep it if the request said ``store: true``.

    ``completion`` is the finished completion, or ``None`` when the call failed or the
    client left, with ``partial`` what was generated until then (it is counted too).
    The writes go together, in one trip to the database thread.
    """
    latency_ms = round((time.monotonic() - started) * 1000)
    generated = completion or partial or {}
    usage = generated.get("usage")
    text = "" if usage_reported(usage) else _generated_text(generated)
    stored = None
    if completion is not None and body.get("store"):
        stored = stored_completion_build(
            api_key=api_key, chat_model=model, body=body, response=completion, latency_ms=latency_ms
        )
    await sync_to_async(_call_save)(
        record=record,
        usage=usage,
        prompt_tokens_estimate=messages_tokens_count(body["messages"]) if text else 0,
        completion_tokens_estimate=tokens_count(text),
        stored=stored,
    )
    completion_logger.info(
        "completion",
        extra={
            "request_id": request_id,
            "user_id": api_key.user_id,
            "model": model.name,
            "source": "api",
            "status": "completed" if completion is not None else "error",
            "latency_ms": latency_ms,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
        },
    )


def _call_save(
    *, record: UsageRecord, usage: dict[str, Any] | None, prompt_tokens_estimate: int,
    completion_tokens_estimate: int, stored: StoredCompletion | None,
) -> None:
    """The stored completion, if any, and the settled usage record linked to it: both or neither."""
    with transaction.atomic() if stored is not None else contextlib.nullcontext():
        if stored is not None:
            stored.save(force_insert=True)
        usage_settle(
            record=record,
            usage=usage,
            prompt_tokens_estimate=prompt_tokens_estimate,
            completion_tokens_estimate=completion_tokens_estimate,
            stored_completion=stored,
        )


def _generated_text(completion: dict[str, Any]) -> str:
    """All text a completion generated: contents, refusals and tool-call arguments."""
    parts = []
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        parts += [message.get("content") or "", message.get("refusal") or ""]
        parts += [(call.get("function") or {}).get("arguments") or "" for call in message.get("tool_calls") or []]
    return "".join(parts)


def api_error_from_quota(exc: QuotaExceeded) -> ApiError:
    """429 as OpenAI words it: ``insufficient_quota`` for budgets, ``rate_limit_exceeded`` with headers for rates."""
    if exc.kind == "budget":
        return ApiError(exc.message, status=429, type="insufficient_quota", code="insufficient_quota")
    headers = {
        f"x-ratelimit-limit-{exc.kind}": str(exc.limit),
        f"x-ratelimit-remaining-{exc.kind}": str(exc.remaining),
    }
    if exc.retry_after is not None:
        headers |= {"Retry-After": str(exc.retry_after), f"x-ratelimit-reset-{exc.kind}": f"{exc.retry_after}s"}
    return ApiError(exc.message, status=429, type=exc.kind, code="rate_limit_exceeded", headers=headers)


async def gateway_complete(
    *, body: dict[str, Any], api_key: ApiKey, request_id: str, later: Callable[[Awaitable[None]], Awaitable[None]]
) -> dict[str, Any]:
    """A non-streaming completion, relayed, accounted, and stored if the request says ``store: true``.

    A completion kept for the client to fetch is saved before it is answered; otherwise
    its accounting is handed to ``later``, to run once the answer is on its way.
    """
    model, finish = await _begin(body=body, api_key=api_key, request_id=request_id)
    try:
        answer = await completion_create(upstream=Upstream.of(model), payload=_payload(body))
    except CompletionError as exc:
        await finish(completion=None)
        raise api_error_from(exc) from exc
    except asyncio.CancelledError:  # the client left; the provider may bill the call all the same
        await finish(completion=None)
        raise
    completion = {**answer, "id": completion_id(), "model": model.name, "object": "chat.completion"}
    if body.get("store"):
        await finish(completion=completion)
    else:
        await later(finish(completion=completion))
    return completion


async def gateway_stream(*, body: dict[str, Any], api_key: ApiKey, request_id: str) -> AsyncIterator[bytes]:
    """Start a streaming completion and return its server-sent events.

    The provider's first chunk is awaited here, so a failure before the reply
    starts is raised as ``ApiError`` with its real status instead of a 200 stream.
    """
    model, finish = await _begin(body=body, api_key=api_key, request_id=request_id)
    client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    payload = _payload(body)
    payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    chunks = completion_stream(upstream=Upstream.of(model), payload=payload)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except CompletionError as exc:
        await finish(completion=None)
        raise api_error_from(exc) from exc
    return _relay(first, chunks, name=model.name, client_wants_usage=client_wants_usage, finish=finish)


async def _relay(
    first: dict[str, Any] | None,
    chunks: AsyncIterator[dict[str, Any]],
    *,
    name: str,
    client_wants_usage: bool,
    finish: Finish,
) -> AsyncIterator[bytes]:
    """Relay the provider's chunks; the call is ended (and counted) however the stream ends, client gone included."""
    normaliser = _StreamNormaliser(id=completion_id(), name=name, client_wants_usage=client_wants_usage)
    assembler = CompletionAssembler(id=normaliser.id, model=name)

    def relayed(upstream_chunk: dict[str, Any]) -> dict[str, Any] | None:
        assembler.add(upstream_chunk)
        return normaliser.chunk(upstream_chunk)

    completion: dict[str, Any] | None = None
    failure: CompletionError | None = None
    try:
        if first is not None:
            if (chunk := relayed(first)) is not None:
                yield _event(chunk)
            async for upstream_chunk in chunks:
                if (chunk := relayed(upstream_chunk)) is not None:
                    yield _event(chunk)
        completion = assembler.completion()
    except CompletionError as exc:
        failure = exc
    finally:
        await chunks.aclose()
        await finish(completion=completion, partial=assembler.completion())
    if failure is not None:
        yield _event(api_error_from(failure).body())
        return
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class _StreamNormaliser:
    """Rewrites provider chunks into the shape the official SDKs assemble correctly."""

    def __init__(self, *, id: str, name: str, client_wants_usage: bool) -> None:
        self.id = id
        self.name = name
        self.client_wants_usage = client_wants_usage
        self.roles_sent: set[int] = set()
        self.tool_calls_started: set[tuple[int, int]] = set()

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = chunk.get("choices") or []
        if not choices and chunk.get("usage"):
            if not self.client_wants_usage:
                return None
            return {**chunk, "id": self.id, "model": self.name, "object": "chat.completion.chunk", "choices": []}
        out = {**chunk, "id": self.id, "model": self.name, "object": "chat.completion.chunk"}
        if not self.client_wants_usage:
            out.pop("usage", None)
        out["choices"] = [self._choice(choice) for choice in choices]
        return out

    def _choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        index = choice.get("index", 0)
        delta = dict(choice.get("delta") or {})
        if index in self.roles_sent:
            delta.pop("role", None)
        else:
            delta.setdefault("role", "assistant")
            self.roles_sent.add(index)
        if delta.get("tool_calls"):
            delta["tool_calls"] = [self._tool_call(index, call) for call in delta["tool_calls"]]
        return {"index": index, "delta": delta, "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason")}

    def _tool_call(self, choice_index: int, call: dict[str, Any]) -> dict[str, Any]:
        call = dict(call)
        function = dict(call.get("function") or {})
        key = (choice_index, call.get("index", 0))
        if key in self.tool_calls_started:
            call.pop("id", None)
            call.pop("type", None)
            function.pop("name", None)
        else:
            self.tool_calls_started.add(key)
            call.setdefault("type", "function")
            function.setdefault("arguments", "")
        call["function"] = function
        return call

"""The OpenAI-compatible gateway behind /v1: route a request to its provider and relay the answer.

Requests arrive validated (``gateway.validation``). The model name (or an alias of it)
resolves through chatweb's model table, and the call runs through the metering
service (``ledger.metering``: routing and fallback, usage, storing, the log line).
The body passes through to the provider except the fields chatweb handles itself
(``store``, ``metadata``). Answers carry chatweb's own ``chatcmpl-`` id and the chat
model's name. Streams are normalised to what the official SDKs expect: ``role`` only
in a choice's first delta, a tool call's ``id``, ``type`` and ``function.name`` only in
its first delta, and the usage chunk only for a client that asked for it.

With ``store: true`` the finished completion is kept (``ledger.stored``): for a
stream, the one assembled from its chunks, saved before ``[DONE]`` once the stream
has ended normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import transaction

from conversations.accounts.selectors import chat_model_list
from conversations.core.errors import ChatwebError, UpstreamFailed
from conversations.ledger.limits import RateWindow
from conversations.ledger.metering.calls import metering_create, metering_stream
from conversations.ledger.metering.log import metering_log
from conversations.ledger.metering.metered import Metered, Status
from conversations.ledger.metering.reserve import metering_begin_api, metering_model
from conversations.ledger.metering.settle import metering_settle
from conversations.ledger.stored import (
    CompletionAssembler,
    completion_id,
    stored_completion_build,
)
from conversations.ledger.usage import usage_reported
from conversations.models import ApiKey, ChatModel, StoredCompletion, UsageRecord

Finish = Callable[..., Awaitable[None]]

# Fields chatweb acts on itself rather than passing to the provider.
LOCAL_FIELDS = ("model", "stream", "store", "metadata")


async def gateway_models(*, api_key: ApiKey) -> list[ChatModel]:
    """The models a key may call: its user's, narrowed to the key's own list."""
    return await sync_to_async(lambda: list(chat_model_list(user=api_key.user, api_key=api_key)))()


async def gateway_model(*, name: str, api_key: ApiKey) -> ChatModel:
    """The model ``name`` if the key may call it, else ``ModelUnavailable`` as for one that does not exist."""
    return await sync_to_async(metering_model)(name=name, api_key=api_key)


def _model(metered: Metered) -> ChatModel:
    """A /v1 call's model: ``metering_begin_api`` always finds one (else ``NotFound``)."""
    assert metered.model is not None
    return metered.model


def _windows(metered: Metered) -> tuple[RateWindow, ...]:
    """Where the call's user stands against their per-minute limits: a /v1 call is always reserved."""
    assert metered.record is not None
    windows: tuple[RateWindow, ...] = metered.record.rate_windows
    return windows


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in LOCAL_FIELDS}


async def _begin(*, body: dict[str, Any], api_key: ApiKey, request_id: str) -> tuple[Metered, Finish]:
    """The metered call (or ``QuotaExceeded``), and how to end it."""
    metered = await metering_begin_api(body=body, api_key=api_key, request_id=request_id)
    return metered, functools.partial(_finished, body=body, api_key=api_key, metered=metered)


async def _finished(
    *,
    body: dict[str, Any],
    api_key: ApiKey,
    metered: Metered,
    completion: dict[str, Any] | None,
    partial: dict[str, Any] | None = None,
) -> None:
    """End a call: settle its usage, keep it if the request said ``store: true``, log one line.

    ``completion`` is the finished completion, or ``None`` when the call failed or the
    client left, with ``partial`` what was generated until then (it is counted too).
    The writes go together, in one trip to the database thread.
    """
    generated = completion or partial or {}
    usage = generated.get("usage")
    stored = None
    if completion is not None and body.get("store"):
        stored = stored_completion_build(
            api_key=api_key, chat_model=_model(metered), body=body, response=completion, latency_ms=metered.latency_ms
        )
    text = "" if usage_reported(usage) else _generated_text(generated)  # counted here only without usage
    record = await sync_to_async(_call_save)(
        metered=metered, usage=usage, text=text, messages=body["messages"], stored=stored
    )
    metering_log(
        metered=metered,
        status=Status.COMPLETED if completion is not None else Status.ERROR,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
    )


def _call_save(*, stored: StoredCompletion | None, **settle: Any) -> UsageRecord:
    """The stored completion, if any, and the settled usage record linked to it: both or neither."""
    with transaction.atomic() if stored is not None else contextlib.nullcontext():
        record = metering_settle(stored=stored, **settle)
    assert record is not None  # a /v1 call is always reserved
    return record


def _generated_text(completion: dict[str, Any]) -> str:
    """All text a completion generated: contents, refusals and tool-call arguments."""
    parts = []
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        parts += [message.get("content") or "", message.get("refusal") or ""]
        parts += [(call.get("function") or {}).get("arguments") or "" for call in message.get("tool_calls") or []]
    return "".join(parts)


async def gateway_complete(
    *, body: dict[str, Any], api_key: ApiKey, request_id: str, later: Callable[[Awaitable[None]], Awaitable[None]]
) -> tuple[dict[str, Any], tuple[RateWindow, ...]]:
    """A non-streaming completion, relayed, accounted, and stored if the request says ``store: true``;
    with where its user stands against their per-minute limits (none without limits).

    A completion kept for the client to fetch is saved before it is answered; otherwise
    its accounting is handed to ``later``, to run once the answer is on its way.
    """
    metered, finish = await _begin(body=body, api_key=api_key, request_id=request_id)
    try:
        answer = await metering_create(metered=metered, payload=_payload(body))
    except (ChatwebError, asyncio.CancelledError):  # a client that left may be billed all the same
        await finish(completion=None)
        raise
    completion = {**answer, "id": completion_id(), "model": _model(metered).name, "object": "chat.completion"}
    if body.get("store"):
        await finish(completion=completion)
    else:
        await later(finish(completion=completion))
    return completion, _windows(metered)


async def gateway_stream(
    *, body: dict[str, Any], api_key: ApiKey, request_id: str, error_body: Callable[[UpstreamFailed], dict[str, Any]]
) -> tuple[AsyncIterator[bytes], tuple[RateWindow, ...]]:
    """Start a streaming completion and return its server-sent events, and the user's per-minute standing.

    The provider's first chunk is awaited here, so a failure before the reply starts
    is raised (``UpstreamFailed``) and answered with its real status instead of a 200
    stream; a later one ends the stream with the event ``error_body`` makes of it.
    """
    metered, finish = await _begin(body=body, api_key=api_key, request_id=request_id)
    client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    payload = _payload(body)
    payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    try:
        chunks = await metering_stream(metered=metered, payload=payload)
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except ChatwebError:
        await finish(completion=None)
        raise
    events = _relay(
        first,
        chunks,
        name=_model(metered).name,
        client_wants_usage=client_wants_usage,
        finish=finish,
        error_body=error_body,
    )
    return events, _windows(metered)


async def _relay(
    first: dict[str, Any] | None,
    chunks: AsyncGenerator[dict[str, Any], None],
    *,
    name: str,
    client_wants_usage: bool,
    finish: Finish,
    error_body: Callable[[UpstreamFailed], dict[str, Any]],
) -> AsyncIterator[bytes]:
    """Relay the provider's chunks; the call is ended (and counted) however the stream ends, client gone included."""
    normaliser = _StreamNormaliser(id=completion_id(), name=name, client_wants_usage=client_wants_usage)
    assembler = CompletionAssembler(id=normaliser.id, model=name)

    def relayed(upstream_chunk: dict[str, Any]) -> dict[str, Any] | None:
        assembler.add(upstream_chunk)
        return normaliser.chunk(upstream_chunk)

    completion: dict[str, Any] | None = None
    failure: UpstreamFailed | None = None
    try:
        if first is not None:
            if (chunk := relayed(first)) is not None:
                yield _event(chunk)
            async for upstream_chunk in chunks:
                if (chunk := relayed(upstream_chunk)) is not None:
                    yield _event(chunk)
        completion = assembler.completion()
    except UpstreamFailed as exc:
        failure = exc
    finally:
        await chunks.aclose()
        await finish(completion=completion, partial=assembler.completion())
    if failure is not None:
        yield _event(error_body(failure))
        return
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    """One server-sent event; Python's encoder takes what orjson refuses (a lone surrogate, as escaped)."""
    try:
        return b"data: " + orjson.dumps(data) + b"\n\n"
    except TypeError:
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
        return {
            "index": index,
            "delta": delta,
            "logprobs": choice.get("logprobs"),
            "finish_reason": choice.get("finish_reason"),
        }

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

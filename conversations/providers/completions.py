"""The one place that calls chat completions over HTTP.

Every provider, the bundled local model included, is an OpenAI-compatible endpoint
reached through one shared ``httpx.AsyncClient`` per event loop, on aiohttp's connections
(``transport``). Failures come out as
``CompletionError`` subclasses carrying the upstream status, type, code and message.
Retries (exponential backoff with jitter, honouring ``retry-after-ms`` and
``Retry-After``) happen only before the first byte of a reply has been received.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from django.conf import settings

from conversations.core.errors import UpstreamFailed
from conversations.providers.sse import CONTENT_TYPE as EVENT_STREAM
from conversations.providers.sse import EventParser
from conversations.providers.transport import AiohttpTransport

if TYPE_CHECKING:
    from conversations.models import ChatModel

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429})
# How long to read on after ``[DONE]`` for the end of the body, so the connection is reused.
DRAIN_TIMEOUT = 1.0


@dataclass(frozen=True)
class Upstream:
    """Where a completion goes: a provider's base URL and key, and its model id."""

    base_url: str
    api_key: str
    model: str

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @classmethod
    def of(cls, model: ChatModel) -> Upstream:
        """Where a chat model's completions go: its provider, under the provider's id for it."""
        return cls(base_url=model.provider.base_url, api_key=model.provider.api_key, model=model.upstream_model)


class CompletionError(UpstreamFailed):
    """An upstream failure in OpenAI's error vocabulary."""


class UpstreamConnectionError(CompletionError):
    """The provider could not be reached (``answered`` false), or dropped the connection."""

    default_status = 502
    default_type = "upstream_unreachable"

    def __init__(self, message: str, *, answered: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.answered = answered


class UpstreamTimeout(CompletionError):
    """The provider did not answer within the configured timeouts."""

    default_status = 504
    default_type = "upstream_timeout"


_clients: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Task[None]]] = {}


def _client() -> httpx.AsyncClient:
    """The shared client of the running event loop (connections are pooled per loop)."""
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    if entry is None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), follow_redirects=False)
        keeper = loop.create_task(_client_keep(loop, client), name="completions-client")
        entry = _clients[loop] = (client, keeper)
    return entry[0]


async def _client_keep(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
    """Close a loop's client when the loop shuts down: ``asyncio.run`` (a command, ``async_to_sync`` with no
    server loop) and test runners cancel every task then, so no connection outlives its loop."""
    try:
        await loop.create_future()
    finally:
        _clients.pop(loop, None)
        await client.aclose()


def _timeout() -> httpx.Timeout:
    conf = settings.COMPLETIONS
    return httpx.Timeout(conf["READ_TIMEOUT"], connect=conf["CONNECT_TIMEOUT"])


async def completion_create(
    *, upstream: Upstream, payload: dict[str, Any], retries: int | None = None
) -> dict[str, Any]:
    """Send a non-streaming completion and return the provider's JSON body.

    ``retries`` bounds the retries of this provider (default ``UPSTREAM_MAX_RETRIES``).
    """
    body = {**payload, "model": upstream.model, "stream": False}
    response = await _send_with_retries(upstream=upstream, body=body, retries=retries)
    try:
        raw = await response.aread()
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("The provider stopped answering mid-reply.") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectionError("The provider dropped the connection mid-reply.") from exc
    finally:
        await response.aclose()
    body = _json_or_text(raw)
    if isinstance(body, str):
        raise CompletionError("The provider sent a reply that is not JSON.", status=502)
    reply: dict[str, Any] = body  # a completion object (as the provider sends it)
    return reply


async def completion_stream(
    *, upstream: Upstream, payload: dict[str, Any], retries: int | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    """Send a streaming completion and yield each chunk's JSON as it arrives.

    Ends at ``data: [DONE]``. An ``error`` payload in the stream, a dropped
    connection or a read timeout raise ``CompletionError`` after the chunks so far.
    """
    body = {**payload, "model": upstream.model, "stream": True}
    response = await _send_with_retries(upstream=upstream, body=body, retries=retries)
    finished = False
    pieces = response.aiter_bytes()
    parser = EventParser()
    try:
        kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != EVENT_STREAM:
            raise CompletionError(
                f"The provider did not send an event stream (its content type: {kind or 'none'}).", status=502
            )
        async for piece in pieces:
            for name, data in parser.feed(piece):
                if data == b"[DONE]":
                    await _drain(pieces)
                    return
                if not data:
                    continue
                chunk = _json_or_text(data)
                if name == "error" or (isinstance(chunk, dict) and chunk.get("error")):
                    raise _error_from_body(chunk, status=None)
                if not isinstance(chunk, dict):
                    unreadable = data[:200].decode("utf-8", "replace")
                    raise CompletionError(f"The provider sent an unreadable event: {unreadable!r}", status=502)
                if any(c.get("finish_reason") for c in chunk.get("choices") or []):
                    finished = True
                yield chunk
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("The provider stopped sending the reply (read timeout).") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectionError("The provider dropped the connection mid-reply.") from exc
    finally:
        await response.aclose()
    if not finished:
        raise UpstreamConnectionError("The provider closed the stream before the reply finished.")


async def _drain(pieces: AsyncIterator[bytes]) -> None:
    """Read and ignore what follows ``[DONE]``: normally just the end of the body."""
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            async for _ in pieces:
                pass


async def _send_with_retries(*, upstream: Upstream, body: dict[str, Any], retries: int | None) -> httpx.Response:
    """POST ``body`` and return a 2xx response whose body is not read yet.

    Retries connection failures and 408/409/429/5xx answers; nothing of a reply has
    been received at that point, so a retry cannot duplicate text.
    """
    conf = settings.COMPLETIONS
    retries = conf["MAX_RETRIES"] if retries is None else retries
    client = _client()
    attempt = 0
    while True:
        request = client.build_request("POST", upstream.url, json=body, headers=upstream.headers, timeout=_timeout())
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            error: CompletionError = UpstreamTimeout("The provider did not answer in time.")
            retryable, wait = isinstance(exc, httpx.ConnectTimeout), None
            cause: Exception | None = exc
        except httpx.TransportError as exc:
            error = UpstreamConnectionError("Could not reach the provider.", answered=False)
            retryable, wait, cause = True, None, exc
        else:
            if response.is_success:
                return response
            try:
                raw = await response.aread()
            except httpx.TransportError:
                raw = b""
            finally:
                await response.aclose()
            wait = _retry_after(response.headers)
            error = _error_from_body(_json_or_text(raw), status=response.status_code, retry_after=wait)
            retryable = _should_retry(response)
            cause = None
        if not retryable or attempt >= retries:
            if cause is not None:  # where and why, for admins: users' messages name no host
                logger.warning("Provider at %s failed: %r", request.url.host, cause)
            raise error from cause
        if wait is None:
            wait = min(conf["BACKOFF_BASE"] * 2**attempt, conf["BACKOFF_MAX"])
            wait *= 1 - 0.25 * random.random()
        if wait > conf["RETRY_AFTER_MAX"]:
            raise error
        attempt += 1
        logger.info("Retrying %s after %.2fs (attempt %d): %r", request.url, wait, attempt, error)
        await asyncio.sleep(wait)


def _should_retry(response: httpx.Response) -> bool:
    explicit: str | None = response.headers.get("x-should-retry")
    if explicit in ("true", "false"):
        return explicit == "true"
    return response.status_code in RETRYABLE_STATUSES or response.status_code >= 500


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the provider asked us to wait, from retry-after-ms or Retry-After."""
    if ms := headers.get("retry-after-ms"):
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value: str | None = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _json_or_text(raw: bytes) -> Any:
    """The JSON in ``raw``, else its text. orjson reads it; what orjson refuses and Python's parser takes
    (a lone surrogate escape, an infinite number) is read as before."""
    try:
        return orjson.loads(raw)
    except ValueError:
        pass
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()


def _error_from_body(body: Any, *, status: int | None, retry_after: float | None = None) -> CompletionError:
    """Build a CompletionError from whatever error body a provider sent."""
    error: Any = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or json.dumps(error)[:500]
        code = error.get("code")
        return CompletionError(
            str(message),
            status=status,
            type=error.get("type") or None,
            code=str(code) if code is not None else None,
            param=error.get("param"),
            retry_after=retry_after,
        )
    message = str(error)[:500] if error else f"HTTP {status}"
    return CompletionError(message, status=status, retry_after=retry_after)


async def models_list(*, base_url: str, api_key: str) -> list[str]:
    """The model ids a provider serves (``GET /models``)."""
    upstream = Upstream(base_url=base_url, api_key=api_key, model="")
    try:
        response = await _client().get(base_url.rstrip("/") + "/models", headers=upstream.headers, timeout=_timeout())
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"The provider at {base_url} did not answer in time.") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectionError(f"Could not reach the provider at {base_url}.") from exc
    body = _json_or_text(response.content)
    if not response.is_success:
        raise _error_from_body(body, status=response.status_code)
    data = body.get("data") if isinstance(body, dict) else None
    return sorted(str(m["id"]) for m in data or [] if isinstance(m, dict) and m.get("id"))

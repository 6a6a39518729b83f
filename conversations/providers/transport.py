"""httpx's transport over aiohttp, for the completions client.

httpx stays the API the completions service speaks (requests, streamed responses,
timeouts, its errors); underneath, aiohttp keeps the connections and parses HTTP in C,
which costs a streamed piece about half the CPU of httpx's own transport and needs no
scan of every pooled connection per request (encode/httpcore#928). Its errors come out
as httpx's, named by what happened, so callers tell a refused connection from a
timeout as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

# Most specific first: the first match names the error.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.ReadError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Raise aiohttp's connection and protocol errors as the httpx error that names them."""
    try:
        yield
    except tuple(kind for kind, _ in _ERRORS) as exc:
        for kind, mapped in _ERRORS:
            if isinstance(exc, kind):
                raise mapped(str(exc) or type(exc).__name__) from exc
        raise


class _Body(httpx.AsyncByteStream):
    """A response body as aiohttp receives it; closing it early closes its connection."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for data in self._response.content.iter_any():
                yield data

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()  # unread: the provider sees the connection close and stops


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with one aiohttp session, made on first use in the running event loop."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=httpx.create_ssl_context(),
            )
            # Not trust_env: with it aiohttp reads ~/.netrc and the proxy variables in a thread on every request.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy the environment names for this scheme and host (HTTPS_PROXY, NO_PROXY...), looked up once."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            try:
                proxy, _ = get_env_proxy_for_url(URL(str(url)))
            except LookupError:
                proxy = None
            self._proxies[key] = str(proxy) if proxy is not None else None
        return self._proxies[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with _httpx_errors():
            response = await self._session_get().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                compress=False,
                proxy=self._proxy(request.url),
                timeout=aiohttp.ClientTimeout(
                    connect=timeout.get("pool"), sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

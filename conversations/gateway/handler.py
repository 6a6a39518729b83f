"""/v1's own ASGI handler: Django's, without what a browser's page costs a machine API.

Django's handler gives every request a thread of its own for its sync code
(``ThreadSensitiveContext``: a thread started and stopped per request) and runs
each page middleware's hooks in that thread, two hops per middleware. For /v1 that
was most of the gateway's added latency (bench/gateway.py). /v1 needs no session,
CSRF, messages or frame options: its views authenticate by API key. So this handler
keeps only the request log and the security middleware, runs them on the event loop,
and leaves the requests' ORM calls on the process's shared sync thread, where the
websocket consumers and generations already run theirs. It also skips the
``request_started`` signal, whose receivers (reset the query log, close stale database
connections) cost a hop to that thread before every call; ``request_finished`` runs
the same connection check after each response. A view can leave work that the client
need not wait for (``after_response``) to run once its response is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from conversations.core.logs import request_log_middleware
from conversations.core.requests import AsyncGetResponse

logger = logging.getLogger(__name__)


async def after_response(request: HttpRequest, work: Awaitable[None]) -> None:
    """Run ``work`` once the response is sent when this handler serves ``request``; else now."""
    pending: list[Awaitable[None]] | None = getattr(request, "after_response", None)
    if pending is None:
        await work
    else:
        pending.append(work)


class _SecurityMiddleware(SecurityMiddleware):
    """Django's HTTPS redirect and security headers, on the event loop: its hooks do no I/O."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response = cast(AsyncGetResponse, self.get_response)  # ApiHandler's chain is async throughout
        response = self.process_request(request) or await get_response(request)
        return self.process_response(request, response)  # type: ignore[arg-type]  # stubs say HttpResponse; any response works


class ApiHandler(ASGIHandler):
    """Serves /v1 with a short middleware chain and no thread per request."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Callable[..., HttpResponseBase | None]] = []
        self._template_response_middleware: list[Callable[..., HttpResponseBase]] = []
        self._exception_middleware: list[Callable[..., HttpResponseBase | None]] = []
        handler = convert_exception_to_response(self._get_response_async)  # type: ignore[attr-defined]  # private: not in django-stubs
        # The middleware, innermost first; each handler here is a coroutine function.
        handler = convert_exception_to_response(_SecurityMiddleware(cast(AsyncGetResponse, handler)))
        handler = convert_exception_to_response(request_log_middleware(handler))
        self._middleware_chain = handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle`` less the ``request_started`` signal: read the body,
        answer while listening for the client leaving (which cancels the view), then close.

        Copied from Django 5.2.19 (pinned by tests/test_pins.py):
        https://github.com/django/django/blob/5.2.19/django/core/handlers/asgi.py"""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, refusal = self.create_request(scope, body_file)
        if request is None:
            assert refusal is not None  # create_request gives a request or the response refusing it
            body_file.close()
            await self.send_response(refusal, send)
            await sync_to_async(refusal.close)()
            return
        pending: list[Awaitable[None]] = []
        setattr(request, "after_response", pending)  # read by after_response(); no attribute of ASGIRequest

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client left while the response was being sent
            return response

        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        processor = asyncio.create_task(process_request())
        await asyncio.wait([listener, processor], return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, processor):
            if not task.done():
                task.cancel()
            try:
                await task
            except (RequestAborted, asyncio.CancelledError):
                pass
            except AssertionError:
                body_file.close()
                raise
        for work in pending:  # outside the tasks: a client leaving does not cancel it
            try:
                await work
            except Exception:
                logger.exception("Work after the response to %s failed", request.path)
        if processor.cancelled():
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await sync_to_async(processor.result().close)()
        body_file.close()

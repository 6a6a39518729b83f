"""/v1's own ASGI handler: Django's, without what a browser's page costs a machine API.

Django's handler gives every request a thread of its own for its sync code
(``ThreadSensitiveContext``: a thread started and stopped per request) and runs
each page middleware's hooks in that thread, two hops per middleware. For /v1 that
was most of the gateway's added latency (bench/gateway.py). /v1 needs no session,
CSRF, messages or frame options: its views authenticate by API key. So this handler
keeps only the request log and the security middleware, runs them on the event loop,
and leaves the requests' ORM calls on the process's shared sync thread, where the
websocket consumers and generations already run theirs.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware

from chatweb.logs import request_log_middleware


class _SecurityMiddleware(SecurityMiddleware):
    """Django's HTTPS redirect and security headers, on the event loop: its hooks do no I/O."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = self.process_request(request) or await self.get_response(request)
        return self.process_response(request, response)


class ApiHandler(ASGIHandler):
    """Serves /v1 with a short middleware chain and no thread per request."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for middleware in (_SecurityMiddleware, request_log_middleware):  # innermost first
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

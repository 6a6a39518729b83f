"""Websockets are accepted only from the site's own pages: the Origin check of Django's CSRF protection.

Browsers send cookies with a websocket to any site, so a page elsewhere could open one
as the signed-in user (cross-site websocket hijacking). Channels' AllowedHostsOriginValidator
compares only the Origin's host name: a page on another port or scheme of the same host
passed. Here the Origin must equal the site's own scheme, host and port (``ws`` counting as
``http``, ``wss`` as ``https``, the proxy's headers as ``BEHIND_PROXY`` trusts them) or be one
of ``CSRF_TRUSTED_ORIGINS``, decided by Django's own ``CsrfViewMiddleware._origin_verified``
(Django 5.2; tests/test_origins.py fails if that method changes). A socket without an Origin
(not from a browser) is refused too, as Channels did.
"""

from __future__ import annotations

import io
from typing import Any

from channels.security.websocket import WebsocketDenier
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

HTTP_SCHEMES = {"ws": "http", "wss": "https"}


def websocket_origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the websocket's Origin is the site's own, as Django's CSRF check decides for a form post."""
    http_scope = {
        **scope,
        "type": "http",
        "method": "GET",
        "scheme": HTTP_SCHEMES.get(scope.get("scheme") or "ws", "http"),
        "query_string": b"",
    }
    request = ASGIRequest(http_scope, io.BytesIO())
    if "HTTP_ORIGIN" not in request.META:
        return False
    verified: bool = CsrfViewMiddleware(_no_view)._origin_verified(request)  # type: ignore[attr-defined]  # private: not in django-stubs
    return verified


def _no_view(request: HttpRequest) -> HttpResponse:
    """The view CsrfViewMiddleware wraps, never called: only its Origin check runs."""
    raise AssertionError("not called")


class SameOriginValidator:
    """ASGI middleware: a websocket from another origin is denied (closed before it opens)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not websocket_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

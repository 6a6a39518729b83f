"""ASGI entry point: Django for pages, a lean Django handler for /v1, the chat consumer for websockets."""

import os
from typing import Any

from django.core.asgi import get_asgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatweb.origins import SameOriginValidator  # noqa: E402
from conversations.chat.sockets import websocket_urlpatterns  # noqa: E402
from conversations.chat.watchdog import WatchdogMiddleware  # noqa: E402
from conversations.core.outages import SocketOutageMiddleware  # noqa: E402
from conversations.gateway.handler import ApiHandler  # noqa: E402

api_asgi_app = ApiHandler()
# The URLconf is imported now, not by the first request or chat message that links somewhere.
get_resolver().url_patterns


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/v1 goes to the API's lean handler, everything else to Django's."""
    app = api_asgi_app if scope["path"].startswith("/v1/") else django_asgi_app
    await app(scope, receive, send)


application = WatchdogMiddleware(
    ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": SameOriginValidator(
                SocketOutageMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
            ),
        }
    )
)

from django.urls import path

from . import converters  # noqa: F401  (registers <id:>)
from .consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/c/<id:conversation_id>/", ChatConsumer.as_asgi(), name="conversation_socket"),
]

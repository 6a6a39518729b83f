from django.urls import path

from conversations.chat.consumer import ChatConsumer

websocket_urlpatterns = [
    path("ws/c/<int:conversation_id>/", ChatConsumer.as_asgi(), name="conversation_socket"),
]

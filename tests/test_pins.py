"""Framework code chatweb copied or replaced, pinned to the upstream version it was written against.

When an upgrade changes one of these, a test here fails: read the new upstream version, bring chatweb's
copy in line, and update the digest.
"""

import hashlib
import inspect

from channels.consumer import AsyncConsumer
from django.core.handlers.asgi import ASGIHandler
from openai.types.chat import completion_create_params

from conversations.gateway.validation.request import KNOWN_FIELDS


def _digest(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def test_the_v1_handler_copies_djangos_asgi_handle_as_of_5_2_19():
    """gateway/handler.py's ``ApiHandler.handle`` is Django's ``ASGIHandler.handle`` without the
    request_started signal. https://github.com/django/django/blob/5.2.19/django/core/handlers/asgi.py"""
    assert _digest(ASGIHandler.handle) == "98faeb5bef800331"


def test_the_chat_consumer_replaces_channels_dispatch_as_of_4_3_2():
    """chat/consumer.py's ``ChatConsumer.dispatch`` skips what Channels' ``AsyncConsumer.dispatch`` does first
    (closing stale database connections) for the conversation's events, and hands it the others.
    https://github.com/django/channels/blob/4.3.2/channels/consumer.py"""
    assert _digest(AsyncConsumer.dispatch) == "39f34e7d4fb0f655"


def test_the_v1_validator_knows_every_field_of_the_sdks_chat_completion_request():
    """Every parameter the official SDK can send to chat.completions.create is one the validator knows, so a
    new SDK field is noticed here rather than refused as unknown by /v1."""
    sdk_fields = set(completion_create_params.CompletionCreateParamsBase.__annotations__)
    assert sdk_fields - set(KNOWN_FIELDS) == set()

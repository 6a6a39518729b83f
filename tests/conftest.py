"""Shared fixtures: the loopback provider, users, a model routed to it, and websocket helpers."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from conversations.models import ChatModel, Conversation, Message, Provider
from tests.live import free_port
from tests.upstream import FakeUpstream

FAKE_MODEL = "fake-model"


def pytest_configure(config: pytest.Config) -> None:
    """Keep xdist workers apart on a shared Redis (each gets its own channel prefix), keep the
    stream watchdog out of the in-process live server (tests run it explicitly or in real workers),
    and test SQLite in a WAL file as it runs in production: Django's default in-memory test
    database shares one cache, whose table locks fail a read at once while the live server writes."""
    django_settings.STREAM_WATCHDOG = False
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        name = os.path.join(tempfile.gettempdir(), f"chatweb-test-{os.getpid()}.sqlite3")
        database.setdefault("TEST", {})["NAME"] = name
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    layer = django_settings.CHANNEL_LAYERS["default"]
    if "Redis" in layer["BACKEND"]:
        layer["CONFIG"]["prefix"] = f"chatweb-test-{worker}-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _close_sync_thread_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close what async ORM calls opened in asgiref's shared sync thread, so test databases can be dropped."""
    yield
    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def _fast_upstream_settings(settings: Any) -> None:
    """Short backoffs and timeouts so failure paths take milliseconds, not minutes."""
    settings.COMPLETIONS = {
        **settings.COMPLETIONS,
        "BACKOFF_BASE": 0.01,
        "BACKOFF_MAX": 0.05,
        "READ_TIMEOUT": 2.0,
        "CONNECT_TIMEOUT": 2.0,
    }


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The loopback provider, with an empty script and request log for this test."""
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


@pytest.fixture
def chat_model(db: None, upstream: FakeUpstream) -> ChatModel:
    provider = Provider.objects.create(name="Fake", base_url=upstream.base_url, api_key="sk-test-upstream")
    return ChatModel.objects.create(
        name=FAKE_MODEL, display_name="Fake Model", provider=provider, upstream_model="fake-upstream", is_default=True
    )


@pytest.fixture
def user(db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="bob", password="bob-password-1")


class _HttpInFlight:
    """The app, counting the HTTP requests it is still handling, answered or not."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1


@pytest.fixture(scope="session")
def _live_server() -> Iterator[tuple[str, _HttpInFlight]]:
    """chatweb's ASGI app served over real HTTP on loopback (uvicorn in a thread, sharing the test database)."""
    import threading

    import uvicorn

    from chatweb.asgi import application

    port = free_port()
    app = _HttpInFlight(application)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def live_server_url(_live_server: tuple[str, _HttpInFlight]) -> Iterator[str]:
    """The live server's URL; at the test's end, before its database is flushed, every request it
    made is done, including what /v1 writes after answering (a flush meeting that write failed)."""
    url, in_flight = _live_server
    yield url
    eventually(lambda: in_flight.count == 0, timeout=30)


def socket_app() -> Any:
    from conversations.chat.sockets import websocket_urlpatterns

    return URLRouter(websocket_urlpatterns)


class Tab:
    """A browser tab's websocket on a conversation, reading the HTML partials it receives."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.received: list[str] = []

    async def send(self, **data: Any) -> None:
        await self.communicator.send_json_to(data)

    async def receive(self, timeout: float = 5.0) -> str:
        html = await self.communicator.receive_from(timeout=timeout)
        self.received.append(html)
        return html

    async def receive_until(self, needle: str, timeout: float = 10.0) -> str:
        """Read partials until one contains ``needle``; returns everything read meanwhile."""
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            html = await self.receive(timeout=max(deadline - loop.time(), 0.01))
            seen.append(html)
            if needle in html:
                return "".join(seen)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def open_tab() -> AsyncIterator[Any]:
    """Open websockets as a given user; all are closed at the end of the test."""
    tabs: list[Tab] = []

    async def open_(user: Any, conversation_id: int, query: str = "", session: Any = None) -> tuple[bool, Any, Tab]:
        path = f"/ws/c/{conversation_id}/" + (f"?{query}" if query else "")
        communicator = WebsocketCommunicator(socket_app(), path)
        communicator.scope["user"] = user
        if user.is_authenticated:
            communicator.scope["session"] = session or await sync_to_async(signed_in_session)(user)
        connected, code = await communicator.connect(timeout=5)
        tab = Tab(communicator)
        if connected:
            tabs.append(tab)
        return connected, code, tab

    yield open_
    for tab in tabs:
        try:
            await tab.close()
        except Exception:
            pass


def signed_in_session(user: Any) -> Any:
    """A session signing ``user`` in, as the login page leaves it (what a page's socket carries)."""
    client = Client()
    client.force_login(user, backend="conversations.accounts.auth.PasswordBackend")
    return import_module(django_settings.SESSION_ENGINE).SessionStore(client.session.session_key)


def path_append(conversation: Conversation, *messages: dict[str, Any]) -> list[Message]:
    """Messages written one after the other below the conversation's current leaf, the last becoming
    its current leaf: a conversation as the chat would have written it."""
    parent = conversation.current_leaf
    made = []
    for fields in messages:
        parent = Message.objects.create(conversation=conversation, parent=parent, **fields)
        made.append(parent)
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    conversation.current_leaf = parent
    return made


async def wait_for_status(message_id: int, *statuses: str, timeout: float = 10.0) -> Message:
    """Poll the database until the message reaches one of ``statuses``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await Message.objects.aget(pk=message_id)
        if message.status in statuses or loop.time() > deadline:
            return message
        await asyncio.sleep(0.02)


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check`` until it returns something truthy (returned), failing after ``timeout`` seconds.

    For what /v1 writes just after answering: a call's usage and its log line.
    """
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{getattr(check, '__name__', check)} stayed false for {timeout} s")
        time.sleep(0.02)
    return result

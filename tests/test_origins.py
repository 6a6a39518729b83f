"""Websockets only from the site's own pages (scheme, host and port), and no query string in Daphne's log."""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.middleware.csrf import CsrfViewMiddleware

from chatweb.origins import SameOriginValidator, websocket_origin_allowed
from conversations.models import Conversation
from tests.conftest import socket_app
from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent


def scope(origin: str | None, *, host: str = "127.0.0.1:8000", scheme: str = "ws", **headers: str) -> dict:
    sent = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin is not None else [])
    sent += [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "websocket", "path": "/ws/c/1/", "scheme": scheme, "headers": sent, "server": ("127.0.0.1", 8000)}


def test_the_sites_own_origin_is_accepted():
    assert websocket_origin_allowed(scope("http://127.0.0.1:8000"))
    assert websocket_origin_allowed(scope("http://localhost:8000", host="localhost:8000"))
    assert websocket_origin_allowed(scope("https://127.0.0.1:8000", scheme="wss"))


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:18150",  # another port of the same host: what the host-only check let through
        "https://127.0.0.1:8000",  # another scheme
        "http://127.0.0.1",
        "http://evil.example:8000",
        "null",
        "",
        "http://127.0.0.1:8000.evil.example",
        "http://[::1",  # not even a URL
    ],
)
def test_other_origins_are_refused(origin):
    assert not websocket_origin_allowed(scope(origin))


def test_no_origin_and_a_host_not_served_are_refused():
    assert not websocket_origin_allowed(scope(None))
    assert not websocket_origin_allowed(scope("http://evil.example:8000", host="evil.example:8000"))


def test_trusted_origins_and_the_proxys_scheme(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    behind_tls = scope("https://chat.example.com", host="app:8000")
    assert websocket_origin_allowed(behind_tls)
    assert not websocket_origin_allowed(scope("http://chat.example.com", host="app:8000"))

    settings.ALLOWED_HOSTS = ["chat.example.com"]
    forwarded = scope("https://chat.example.com", host="chat.example.com", x_forwarded_proto="https")
    settings.CSRF_TRUSTED_ORIGINS = []
    assert not websocket_origin_allowed(forwarded)  # the proxy's header is not trusted by default
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert websocket_origin_allowed(forwarded)


def test_djangos_origin_check_is_the_one_this_was_written_against():
    """chatweb.origins calls CsrfViewMiddleware._origin_verified (Django 5.2.19), a private method:
    when Django changes it, read the new version and update chatweb/origins.py and this digest.
    https://github.com/django/django/blob/5.2.19/django/middleware/csrf.py"""
    source = inspect.getsource(CsrfViewMiddleware._origin_verified)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == "c244e21ccaaa9f6f"


@pytest.mark.django_db(transaction=True)
async def test_a_socket_from_another_origin_is_denied_before_it_opens(user, chat_model):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    for origin, opens in (("http://127.0.0.1:18150", False), ("http://testserver", True)):
        communicator = WebsocketCommunicator(
            SameOriginValidator(socket_app()), f"/ws/c/{conversation.pk}/",
            headers=[(b"host", b"testserver"), (b"origin", origin.encode())],
        )  # fmt: skip
        communicator.scope["user"] = user
        connected, _ = await communicator.connect(timeout=5)
        assert connected is opens
        await communicator.disconnect()


def test_daphnes_log_shows_no_query_string(tmp_path):
    """A key put in ?api_key= must not reach the logs: the container's server, as started by scripts/serve.sh."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}", PY=sys.executable, PORT=str(port),
        CHATWEB_DATA_DIR=str(tmp_path / "data"), STATIC_ROOT=str(tmp_path / "static"), LOCAL_MODEL="0",
    )  # fmt: skip
    process = subprocess.Popen(
        ["scripts/serve.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?api_key=sk-cw-SECRET", timeout=2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    output = process.stdout.read().decode()
    assert "GET /healthz 200" in output  # chatweb's own request line, without the query
    assert "SECRET" not in output

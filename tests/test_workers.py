"""Several workers, one product: replies cross workers, and a dead worker's replies end as interrupted."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from conversations.chat.watchdog import watchdog_tick
from conversations.models import Conversation, Message
from tests.conftest import path_append
from tests.live import die_with_parent, free_port
from tests.upstream import Reply

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


async def test_watchdog_interrupts_replies_whose_worker_died_and_tells_the_page(user, chat_model, open_tab, settings):
    settings.STREAM_STALE_AFTER = 20
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    orphan, fresh = await sync_to_async(path_append)(
        conversation,
        {"role": "assistant", "status": "streaming", "content": "half of a rep", "model_name": "fake-model"},
        {"role": "assistant", "status": "streaming"},
    )
    await Message.objects.filter(pk=orphan.pk).aupdate(updated_at=timezone.now() - timedelta(seconds=60))
    _, _, tab = await open_tab(user, conversation.pk)

    assert await watchdog_tick() == [orphan.pk]

    html = await tab.receive_until('data-status="interrupted"')
    assert "half of a rep" in html and "regenerate" in html
    orphan = await Message.objects.aget(pk=orphan.pk)
    assert orphan.status == "interrupted" and orphan.content == "half of a rep"
    assert (await Message.objects.aget(pk=fresh.pk)).status == "streaming"  # its worker may be alive


needs_services = pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
    reason="two real workers need the shared PostgreSQL and Redis (DATABASE_URL and REDIS_URL)",
)


@pytest.fixture
def workers(tmp_path):
    """Start Daphne workers sharing this test's PostgreSQL database and a Redis channel prefix.

    ``start(name, **environment)`` overrides the workers' environment (another Redis, the
    database through a proxy); each worker's log is ``tmp_path / f"{name}.log"``.
    """
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
            "?application_name=chatweb-worker"
        ),
        "CHANNEL_LAYER_PREFIX": f"workers-test-{os.getpid()}",
        "CHATWEB_DATA_DIR": str(tmp_path),
        "SECRET_KEY": settings.SECRET_KEY,  # so the workers accept this test's session
        "STREAM_SAVE_INTERVAL": "0.5",
        "STREAM_HEARTBEAT_INTERVAL": "1",
        "STREAM_STALE_AFTER": "4",
        "LOCAL_MODEL": "0",
        "DB_POOL_SIZE": "3",
    }
    started: dict[str, tuple[subprocess.Popen, int]] = {}

    def start(name: str, **environment: str) -> int:
        port = free_port()
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "chatweb.serve", "-b", "127.0.0.1", "-p", str(port), "chatweb.asgi:application"],
                cwd=ROOT,
                env={**env, **environment},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        started[name] = (process, port)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, f"worker {name} did not start"
                time.sleep(0.1)

    def kill(name: str) -> None:
        started[name][0].send_signal(signal.SIGKILL)
        started[name][0].wait(timeout=10)

    yield start, kill
    for name, (process, _) in started.items():
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        # Shown by pytest when the test failed: what the worker saw.
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        print(f"--- the end of worker {name}'s log:", log[-4000:], sep="\n")


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class Page:
    """A browser tab's websocket on one worker."""

    def __init__(self, port: int, conversation_id: int, cookie: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/c/{conversation_id}/"
        self.headers = {"Cookie": cookie}
        self.origin = f"http://127.0.0.1:{port}"
        self.seen = ""

    async def __aenter__(self) -> Page:
        self.socket = await websockets.connect(self.url, additional_headers=self.headers, origin=self.origin)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.socket.close()

    async def send(self, **data: str) -> None:
        import json

        await self.socket.send(json.dumps(data))

    async def until(self, needle: str, timeout: float = 15) -> str:
        async with asyncio.timeout(timeout):
            while needle not in self.seen:
                self.seen += await self.socket.recv()
        return self.seen

    async def until_word(self, word: str, timeout: float = 15) -> str:
        """Until the page has shown ``word`` of the reply, alone or in a delta with the words after it."""
        async with asyncio.timeout(timeout):
            while not re.search(rf" {word}[ <]", self.seen):
                self.seen += await self.socket.recv()
        return self.seen


def _slow_reply(count: int, delay: float) -> Reply:
    words = [f" w{i}" for i in range(count)]
    return Reply(text="".join(words), pieces=words, delay=delay)


@needs_services
async def test_a_reply_generated_on_one_worker_streams_to_another_and_stops_from_it(
    user, chat_model, upstream, workers
):
    start, _ = workers
    port_a, port_b = start("a"), start("b")
    cookie = await sync_to_async(_session_cookie)(user)
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    upstream.script(_slow_reply(200, 0.05))

    async with Page(port_a, conversation.pk, cookie) as on_a:
        await on_a.send(message="Count slowly")
        await on_a.until_word("w3")
        async with Page(port_b, conversation.pk, cookie) as on_b:
            # B joins mid-reply: it gets the text so far, then the rest live.
            await on_b.until_word("w10")
            await on_b.send(action="stop")
            await on_b.until('data-status="stopped"')
            await on_a.until('data-status="stopped"')
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "stopped"
    assert reply.content.startswith(" w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10")
    assert len(reply.content.split()) < 200  # it really stopped early


@needs_services
async def test_a_worker_killed_mid_reply_leaves_an_interrupted_reply_with_its_text(user, chat_model, upstream, workers):
    start, kill = workers
    port_a, port_b = start("a"), start("b")
    cookie = await sync_to_async(_session_cookie)(user)
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    upstream.script(_slow_reply(400, 0.05))

    async with Page(port_a, conversation.pk, cookie) as on_a, Page(port_b, conversation.pk, cookie) as on_b:
        await on_a.send(message="Count slowly")
        await on_b.until_word("w30")
        kill("a")
        # The surviving worker's watchdog notices within the 30 seconds.
        html = await on_b.until('data-status="interrupted"', timeout=30)

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "interrupted"
    # Saved every 0.5 s while streaming 20 words/s: at most the last ~10 words seen are lost.
    assert reply.content.startswith(" w0 w1 w2") and len(reply.content.split()) >= 30 - 10
    assert "regenerate" in html
    # The user can go on: regenerate on the surviving worker.
    upstream.script(Reply(text="Back again."))
    async with Page(port_b, conversation.pk, cookie) as on_b:
        await on_b.send(action="regenerate")
        await on_b.until("Back again.")


@needs_services
async def test_a_worker_keeps_its_database_connections_bounded(user, workers):
    """60 concurrent requests that each use the database never hold more than the pool's 3 connections."""
    import httpx

    start, _ = workers
    port = start("a")

    def worker_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'chatweb-worker'"
            )
            return cursor.fetchone()[0]

    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(await sync_to_async(worker_connections)())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(3):
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(60)))
            assert all(a.status_code == 200 for a in answers)
    done.set()
    await sampler
    assert max(samples) >= 1 and max(samples) <= 3


@needs_services
async def test_a_branch_streaming_on_one_worker_is_shown_live_to_a_tab_on_another_that_switches_to_it(
    user, chat_model, upstream, workers
):
    start, _ = workers
    port_a, port_b = start("a"), start("b")
    cookie = await sync_to_async(_session_cookie)(user)
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    upstream.script(Reply(text="First answer."))

    async with Page(port_a, conversation.pk, cookie) as on_a, Page(port_b, conversation.pk, cookie) as on_b:
        await on_a.send(message="Question")
        await on_b.until("First answer.")
        question = await Message.objects.aget(conversation=conversation, content="Question")
        upstream.script(_slow_reply(120, 0.05))
        await on_a.send(action="edit", message_id=str(question.pk), message="Better question")
        await on_a.until_word("w5")  # the new branch streams on worker A
        edited = await Message.objects.aget(conversation=conversation, content="Better question")

        on_b.seen = ""
        await on_b.send(action="switch", message_id=str(question.pk))  # B goes back to the first branch
        await on_b.until("First answer.")
        on_b.seen = ""
        await on_b.send(action="switch", message_id=str(edited.pk))  # and to the streaming one
        await on_b.until('id="messages" hx-swap-oob="innerHTML"')
        await on_b.until_word("w40")  # its text so far, then live from worker A
        await on_b.until('data-status="complete"', timeout=30)

    reply = await Message.objects.aget(conversation=conversation, parent=edited)
    assert reply.status == "complete" and len(reply.content.split()) == 120
    assert "beforeend:#message-" in on_b.seen  # live pieces, not only the finished reply

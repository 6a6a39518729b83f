"""Deployments that meet trouble: idle sockets on Redis, Redis and PostgreSQL going away mid-reply,
replies too long for a websocket frame, and replies the watchdog has to end.

The cross-worker cases run real Daphne workers on PostgreSQL (DATABASE_URL) and either the
machine's Redis or a redis-server the test starts, kills and restarts on a port of its own; the
PostgreSQL outage goes through a TCP proxy the test cuts, so only the workers' connections drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import Client
from django.utils import timezone

from conversations.chat.frames import FRAME_MAX_BYTES
from conversations.chat.selectors import message_page
from conversations.chat.turns import message_regenerate, message_send
from conversations.chat.watchdog import watchdog_tick
from conversations.ledger.totals import conversation_totals
from conversations.models import Conversation, Message, StoredCompletion, UsageRecord
from conversations.providers.tokens import tokens_count
from tests.outage import RedisServer, TcpProxy
from tests.test_workers import Page, _session_cookie, _slow_reply, needs_services, workers  # noqa: F401
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)

RECONNECT_CODES = (1006, 1011, 1012, 1013, 4503)  # the codes after which the page's socket reconnects


def _reply_shown(message_id: int, status: str) -> str:
    return f'id="message-{message_id}" class="message assistant" data-status="{status}"'


class ReconnectingPage(Page):
    """A tab whose socket reconnects as the page's does, naming the replies it shows as streaming."""

    def __init__(self, port: int, conversation_id: int, cookie: str) -> None:
        super().__init__(port, conversation_id, cookie)
        self.base_url = self.url
        self.streaming: list[int] = []
        self.closes: list[int] = []

    async def until(self, needle: str, timeout: float = 30) -> str:
        async with asyncio.timeout(timeout):
            while needle not in self.seen:
                await self._read()
        return self.seen

    async def until_word(self, word: str, timeout: float = 30) -> str:
        async with asyncio.timeout(timeout):
            while not re.search(rf" {word}[ <]", self.seen):
                await self._read()
        return self.seen

    async def _read(self) -> None:
        try:
            self.seen += await self.socket.recv()
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            assert code in RECONNECT_CODES, f"closed with {code}, after which the page would not reconnect"
            self.closes.append(code)
            await self._reconnect()

    async def _reconnect(self) -> None:
        self.url = f"{self.base_url}?streaming={','.join(map(str, self.streaming))}"
        while True:
            await asyncio.sleep(0.2)
            with contextlib.suppress(OSError, websockets.InvalidHandshake):
                await self.__aenter__()
                return


async def _status(message_id: int, status: str, timeout: float = 30) -> Message:
    """The message once it has reached ``status``; fails the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while (message := await Message.objects.aget(pk=message_id)).status != status:
            await asyncio.sleep(0.05)
    return message


async def _logged(log: Path, line: str, timeout: float = 30) -> None:
    """Wait until the worker's log says ``line``; fails the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while line not in log.read_text():
            await asyncio.sleep(0.1)


@needs_services
async def test_idle_sockets_on_redis_stay_open_past_the_layers_timeouts(user, chat_model, upstream, workers):
    """Six tabs on two workers, silent for longer than channels-redis's 5 s blocking pop (twice), stay open."""
    start, _ = workers
    ports = start("a"), start("b")
    cookie = await sync_to_async(_session_cookie)(user)
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    pages = [Page(ports[i % 2], conversation.pk, cookie) for i in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        for page in pages:
            await stack.enter_async_context(page)
        await asyncio.sleep(12)
        assert [page.socket.close_code for page in pages] == [None] * 6
        upstream.script(Reply(text="Still listening."))
        await pages[0].send(message="Hello?")
        for page in pages:
            await page.until("Still listening.")


@needs_services
async def test_a_redis_restart_mid_reply_neither_fails_replies_nor_breaks_stop(
    user, chat_model, upstream, workers, tmp_path
):
    redis = RedisServer(tmp_path).start()
    try:
        start, _ = workers
        port_a, port_b = start("a", REDIS_URL=redis.url), start("b", REDIS_URL=redis.url)
        cookie = await sync_to_async(_session_cookie)(user)
        conversation = await Conversation.objects.acreate(user=user, model=chat_model)

        # A reply that finishes while Redis is down ends complete, whole, and the tabs see it when back.
        first_text = _slow_reply(120, 0.05)
        upstream.script(first_text)
        async with (
            ReconnectingPage(port_a, conversation.pk, cookie) as on_a,
            ReconnectingPage(port_b, conversation.pk, cookie) as on_b,
        ):
            await on_a.send(message="Count")
            await on_b.until_word("w20")
            first = await Message.objects.aget(conversation=conversation, role="assistant")
            on_a.streaming = on_b.streaming = [first.pk]
            redis.kill()
            first = await _status(first.pk, "complete")
            redis.start()
            for page in (on_a, on_b):
                html = await page.until(_reply_shown(first.pk, "complete"))
                assert " w119" in html[html.index(_reply_shown(first.pk, "complete")) :]
                assert page.closes  # the outage did close it, and it came back
        assert first.content == first_text.text and first.error == ""

        # Mid-reply: the tab that comes back gets the text written meanwhile, then Stop works from it.
        upstream.script(_slow_reply(600, 0.05))
        async with (
            ReconnectingPage(port_a, conversation.pk, cookie) as on_a,
            ReconnectingPage(port_b, conversation.pk, cookie) as on_b,
        ):
            await on_a.send(message="Count again")
            await on_b.until_word("w10")
            second = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
            on_b.streaming = [second.pk]
            redis.kill()
            await asyncio.sleep(2)
            redis.start()
            await on_b.until_word("w90")
            assert on_b.closes
            await on_b.send(action="stop")
            await on_b.until(_reply_shown(second.pk, "stopped"))
        second = await Message.objects.aget(pk=second.pk)
        assert second.status == "stopped"
        assert second.content.startswith(" w0 w1 w2") and 90 <= len(second.content.split()) < 600
    finally:
        redis.stop()
    assert not await Message.objects.filter(status="streaming").aexists()


@needs_services
async def test_a_database_outage_keeps_the_reply_and_closes_handshakes_with_a_code_the_page_explains(
    user, chat_model, upstream, workers, tmp_path
):
    db = connection.settings_dict
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))).start()
    try:
        start, _ = workers
        port = start(
            "a",
            DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}?application_name=chatweb-worker",
        )
        cookie = await sync_to_async(_session_cookie)(user)
        conversation = await Conversation.objects.acreate(user=user, model=chat_model)
        text = _slow_reply(100, 0.05)
        upstream.script(text)
        async with Page(port, conversation.pk, cookie) as tab:
            await tab.send(message="Count")
            await tab.until_word("w10")
            reply = await Message.objects.aget(conversation=conversation, role="assistant")
            proxy.cut()
            await _logged(tmp_path / "a.log", "Saving streaming replies failed")
            # A tab opened now is told to come back later, which the page explains; no HTTP 500.
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with Page(port, conversation.pk, cookie) as late:
                    await late.socket.recv()
            assert closed.value.rcvd.code == 4503
            # The reply ends while the database is away; its text waits for it.
            await asyncio.sleep(6)
            proxy.restore()
            html = await tab.until(_reply_shown(reply.pk, "complete"))
        assert " w99" in html[html.index(_reply_shown(reply.pk, "complete")) :]
        reply = await Message.objects.aget(pk=reply.pk)
        assert reply.status == "complete" and reply.content == text.text
        log = (tmp_path / "a.log").read_text()
        assert log.count("Saving streaming replies failed") == 1
        assert log.count("The stream watchdog failed") == 1
        assert "Traceback" not in log
    finally:
        proxy.cut()


async def test_a_reply_longer_than_a_frame_reaches_the_tab_in_frames_it_accepts(
    user, chat_model, upstream, open_tab, settings
):
    """Every frame stays under the 1 MiB that Daphne and websocket clients accept; the finished reply is fetched."""
    settings.CHAT_REPLY_MAX_CHARS = 2_000_000
    settings.STREAM_SAVE_INTERVAL = 0.2
    pieces = [f'line {i} <b> & "quoted"\n' * 400 for i in range(120)]  # about 1.4 MB, 1.9 MB escaped
    upstream.script(Reply(text="".join(pieces), pieces=pieces))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)

    await tab.send(message="Write a lot")
    html = await tab.receive_until('id="conversation-usage"', timeout=60)

    assert max(len(frame.encode()) for frame in tab.received) <= FRAME_MAX_BYTES
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "complete" and reply.content == "".join(pieces)
    url = f"/c/{conversation.pk}/messages/{reply.pk}"
    assert f'hx-get="{url}"' in html and 'data-status="complete"' in html
    client = Client()
    await sync_to_async(client.force_login)(user)
    page = await sync_to_async(client.get)(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert _reply_shown(reply.pk, "complete") in body and "line 119 &lt;b&gt;" in body and "<b>" not in body


async def test_a_reply_past_the_length_cap_is_cut_and_says_so(user, chat_model, upstream, open_tab, settings):
    settings.CHAT_REPLY_MAX_CHARS = 1000
    pieces = [f"word{i:03} " for i in range(400)]  # 3,200 characters
    upstream.script(Reply(text="".join(pieces), pieces=pieces))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)

    await tab.send(message="Never stop")
    html = await tab.receive_until('class="message assistant" data-status="stopped"')

    assert "reached 1,000 characters" in html
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "stopped" and reply.content == "".join(pieces)[:1000] and reply.finish_reason == "length"
    record = await UsageRecord.objects.aget(message=reply)
    assert record.state == "settled" and record.estimated  # the stream was closed before its usage came
    stored = await StoredCompletion.objects.aget(message=reply)
    assert stored.status == "stopped" and stored.response["choices"][0]["finish_reason"] == "length"


async def test_a_reply_the_watchdog_interrupts_is_settled_from_its_saved_text_and_stored(user, chat_model, settings):
    settings.STREAM_STALE_AFTER = 20
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    question, reply = await sync_to_async(message_send)(conversation=conversation, content="Count to ten")
    reserved = await UsageRecord.objects.aget(message=reply)
    assert reserved.state == "reserved"
    # Its worker died after saving part of the reply.
    await Message.objects.filter(pk=reply.pk).aupdate(
        content="one two three", updated_at=timezone.now() - timedelta(seconds=60)
    )

    assert await watchdog_tick() == [reply.pk]

    record = await UsageRecord.objects.aget(pk=reserved.pk)
    assert record.state == "settled" and record.estimated
    assert record.completion_tokens == tokens_count("one two three") < reserved.completion_tokens
    stored = await StoredCompletion.objects.aget(message_id=reply.pk)
    assert stored.status == "interrupted" and record.stored_completion_id == stored.id
    assert stored.messages == [{"role": "user", "content": "Count to ten"}]
    assert stored.response["choices"][0]["message"]["content"] == "one two three"
    reply = await Message.objects.aget(pk=reply.pk)
    assert reply.status == "interrupted" and reply.content == "one two three"

    # Regenerating it keeps the record's link to the reply it was for.
    _, again = await sync_to_async(message_regenerate)(conversation=conversation)
    assert (await UsageRecord.objects.aget(pk=reserved.pk)).message_id == reply.pk
    assert (await StoredCompletion.objects.aget(pk=stored.pk)).message_id == reply.pk
    assert (await sync_to_async(conversation_totals)(conversation=conversation)).requests == 2
    shown, _ = await sync_to_async(message_page)(conversation=conversation)
    assert [m.pk for m in shown] == [question.pk, again.pk]

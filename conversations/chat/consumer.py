"""The chat websocket: carries a conversation's events to the browser and the user's actions in."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError
from django.template.backends.django import Template
from django.template.loader import get_template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from conversations.accounts.users import session_expiry
from conversations.chat.branches import (
    chat_branch_delete,
    chat_continue,
    chat_edit,
    chat_select,
)
from conversations.chat.generation.control import generation_sync
from conversations.chat.selectors import (
    branch_page,
    conversation_afind,
    conversation_leaf_id,
    message_list_of,
)
from conversations.chat.turns import chat_regenerate, chat_resume, chat_send, chat_stop
from conversations.core.errors import NotFound
from conversations.core.events import account_group, conversation_group
from conversations.core.ids import row_id
from conversations.core.jsoninput import JsonInputError, json_input_parse
from conversations.core.metrics import sockets_open
from conversations.core.rendering import streaming_render
from conversations.ledger.reports import Totals, conversation_totals
from conversations.models import Conversation, Message

TEMPLATE = "conversations/chat.html"
# What one frame may carry: websocket clients commonly refuse messages over 1 MiB (Daphne does too).
# A finished message rendered larger is fetched over HTTP instead; streamed text goes in parts
# of TEXT_PART_CHARS, which escaped and UTF-8 encoded (at most 6 bytes a character) stay under it.
FRAME_MAX_BYTES = 512 * 1024
TEXT_PART_CHARS = 64 * 1024
DELTA_TEXT = mark_safe("\x00")  # marks where a delta's text goes in its partial, which has no NUL of its own


@functools.cache
def _partial(name: str) -> Template:
    """A partial of the chat page, looked up once: finding it again took 40 % of each delta's render."""
    return get_template(f"{TEMPLATE}#{name}")


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One browser tab on one conversation."""

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation = await conversation_afind(user=user, conversation_id=conversation_id)
        if self.conversation is None:
            await self.close(code=4404)
            return
        self.group = conversation_group(self.conversation.pk)
        self.shown: dict[int, int] = {}  # reply id -> how much of its text this tab has
        self.delta_frames: dict[int, tuple[str, str]] = {}  # reply id -> its delta partial around the text
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        sockets_open.inc()
        self.counted = True  # in chatweb_sockets_open until it disconnects
        # The user's sockets on every worker: told to check their session when it may have ended.
        self.user_group = account_group(user_id=user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        self.session_watch = asyncio.create_task(self._session_watch())
        running, self.off_path, finished = await chat_resume(
            conversation=self.conversation, shown_streaming=self._query_ids("streaming"), reply_to=self.channel_name
        )
        # Until a running reply's text so far arrives, its deltas are already part of that text.
        self.awaiting_snapshot = set(running)
        for message in finished:
            await self._send_message(message)
        # A page showing another branch than the current one (switched meanwhile in another tab) is sent it.
        shown_leaf = self._query_ids("leaf")
        if shown_leaf and shown_leaf[0] != await database_sync_to_async(conversation_leaf_id)(
            conversation=self.conversation
        ):
            await self.chat_branch({"anchor": None})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            sockets_open.dec()
        if hasattr(self, "group"):
            self.session_watch.cancel()
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand the conversation's events straight to their handler.

        Channels first closes stale database connections for every event, a hop to the
        sync thread; deltas and snapshots touch no database, and with hundreds of
        streams that hop per delta took most of a worker's time (bench/streams.py).
        The handlers that read rows do that check in their one hop for them.
        """
        handler = CHAT_EVENTS.get(message["type"])
        if handler is None:
            await super().dispatch(message)
        else:
            await handler(self, message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """A frame from the page: JSON text, else a notice (and the socket stays open)."""
        try:
            content = json_input_parse(text_data) if text_data is not None else None
        except JsonInputError:
            content = None
        if content is None:
            notice = "That message could not be read. Send text from the chat page."
            await self._send_partial("composer-notice", notice=notice, oob=True)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Actions from the page's ws-send forms: send (default), stop, regenerate, and on a message
        (``message_id``): edit, switch (to that version), continue, delete; refused once the session ended."""
        if await self._session_expiry() is None:
            await self.close(code=4401)
            return
        data = content if isinstance(content, dict) else {}
        action = data.get("action", "send")
        message_id = data.get("message_id") or None
        try:
            if action == "stop":
                await chat_stop(conversation=self.conversation)
            elif action == "regenerate":
                await chat_regenerate(conversation=self.conversation, message_id=message_id)
            elif action == "edit":
                content = str(data.get("message", ""))
                try:
                    await chat_edit(conversation=self.conversation, message_id=message_id, content=content)
                except ValidationError as exc:  # said beside the edit, which keeps what was typed
                    await self._send_partial("edit-notice", notice=" ".join(exc.messages))
            elif action == "switch":
                await chat_select(conversation=self.conversation, message_id=message_id)
            elif action == "continue":
                await chat_continue(conversation=self.conversation, message_id=message_id)
            elif action == "delete":
                await chat_branch_delete(conversation=self.conversation, message_id=message_id)
            else:
                await chat_send(
                    conversation=self.conversation,
                    content=str(data.get("message", "")),
                    model_name=str(data.get("model") or "") or None,
                    attachment_ids=_listed(data.get("attachments")),
                )
                await self._send_partial("composer-reset")
        except ValidationError as exc:
            await self._send_partial("composer-notice", notice=" ".join(exc.messages), oob=True)
            return
        except NotFound as exc:
            await self._send_partial("composer-notice", notice=exc.message, oob=True)
            return
        except Conversation.DoesNotExist:  # deleted while this socket was open: 4404, which the page explains
            await self.close(code=4404)
            return
        await self._send_partial("composer-notice", notice="", oob=True)

    async def account_check(self, event: dict[str, Any]) -> None:
        """The user signed out, changed their password or was deactivated somewhere: close unless still signed in."""
        if await self._session_expiry() is None:
            await self.close(code=4401)

    async def _session_watch(self) -> None:
        """Close the socket when its session expires (checked again then: activity may have extended it)."""
        while (expiry := await self._session_expiry()) is not None:
            await asyncio.sleep(max((expiry - timezone.now()).total_seconds(), 0) + 1)
        await self.close(code=4401)

    async def _session_expiry(self) -> datetime | None:
        """When this socket's session expires, or None if it no longer signs its user in."""
        session = self.scope.get("session")
        return await database_sync_to_async(session_expiry)(
            session_key=session.session_key if session is not None else None, user_id=self.scope["user"].pk
        )

    async def chat_turn(self, event: dict[str, Any]) -> None:
        self.off_path.difference_update(event["message_ids"])
        messages = await database_sync_to_async(message_list_of)(
            conversation=self.conversation, message_ids=event["message_ids"]
        )
        await self._send_partial(
            "turn",
            messages=messages,
            replaces=event.get("replaces"),
            conversation_id=self.conversation.pk,
            title=event["title"],
        )

    async def chat_delta(self, event: dict[str, Any]) -> None:
        """Show the part of the new text this tab does not have yet.

        A delta that starts past what the tab has means one never arrived (the channel
        layer restarted): the tab asks for the text so far instead.
        """
        message_id, start, text = event["message_id"], event["start"], event["text"]
        if message_id in self.awaiting_snapshot or message_id in self.off_path:
            return
        shown = self.shown.get(message_id, 0)
        if start > shown:
            self.awaiting_snapshot.add(message_id)
            await generation_sync(message_ids=[message_id], reply_to=self.channel_name)
        elif start + len(text) > shown:
            self.shown[message_id] = start + len(text)
            await self._send_text(message_id, text[shown - start :], replace=False)

    async def chat_listening(self, event: dict[str, Any]) -> None:
        """A reply's generation listens now: ask it again for the text this tab still waits for."""
        if event["message_id"] in self.awaiting_snapshot:
            await generation_sync(message_ids=[event["message_id"]], reply_to=self.channel_name)

    async def chat_snapshot(self, event: dict[str, Any]) -> None:
        """Show the reply so far: its finished blocks formatted, the rest as text."""
        if event["message_id"] in self.off_path:
            return
        self.awaiting_snapshot.discard(event["message_id"])
        self.shown[event["message_id"]] = len(event["text"])
        blocks, tail = streaming_render(event["text"])
        await self._send_text(event["message_id"], tail, replace=True, blocks=blocks)

    async def chat_blocks(self, event: dict[str, Any]) -> None:
        """Show the reply so far as the generation formatted it: its finished blocks rendered, the open tail."""
        message_id = event["message_id"]
        if message_id in self.off_path:
            return
        self.awaiting_snapshot.discard(message_id)
        self.shown[message_id] = event["end"] + len(event["text"])
        blocks = mark_safe(event["html"])  # noqa: S308 - rendered and sanitised by the generation (markdown_render)
        await self._send_text(message_id, event["text"], replace=True, blocks=blocks)

    async def chat_done(self, event: dict[str, Any]) -> None:
        """Show the finished reply whole, and the conversation's new totals."""
        self.awaiting_snapshot.discard(event["message_id"])
        self.shown.pop(event["message_id"], None)
        self.delta_frames.pop(event["message_id"], None)
        self.off_path.discard(event["message_id"])
        messages, totals = await database_sync_to_async(self._finished_rows)(event["message_id"])
        for message in messages:
            await self._send_message(message)
        await self._send_partial("conversation-usage", conversation_usage=totals, oob=True)

    async def chat_branch(self, event: dict[str, Any]) -> None:
        """The current path changed (a version chosen, an edit, a deletion, here or in another tab): show its
        latest page whole, then the text so far of the replies streaming on it, which go on live."""
        messages, has_earlier, streaming, self.off_path = await database_sync_to_async(branch_page)(
            conversation=self.conversation
        )
        context = {"messages": messages, "has_earlier": has_earlier, "conversation": self.conversation,
                   "anchor": event.get("anchor")}
        html = _partial("messages-page").render(context)
        if len(html.encode()) > FRAME_MAX_BYTES:  # the tab fetches the page over HTTP instead
            html = _partial("messages-page").render({**context, "fetch": True})
        await self.send(text_data=html)
        self.awaiting_snapshot.update(streaming)
        await generation_sync(message_ids=streaming, reply_to=self.channel_name)

    async def chat_continued(self, event: dict[str, Any]) -> None:
        """A reply streams again (Continue): show it streaming, its new text to follow what it had."""
        messages = await database_sync_to_async(message_list_of)(
            conversation=self.conversation, message_ids=[event["message_id"]]
        )
        for message in messages:
            self.shown[message.pk] = len(message.content)
            await self._send_message(message)

    def _finished_rows(self, message_id: int) -> tuple[list[Message], Totals]:
        return (
            message_list_of(conversation=self.conversation, message_ids=[message_id]),
            conversation_totals(conversation=self.conversation),
        )

    def _query_ids(self, name: str) -> list[int]:
        """Ids the page sent in a query parameter: ``streaming``, the replies it showed as streaming,
        and ``leaf``, the last message it showed."""
        query = self.scope.get("query_string", b"").decode("latin-1")
        for pair in query.split("&"):
            key, _, value = pair.partition("=")
            if key == name:
                ids = (row_id(v) for v in value.split(",")[:50])
                return [message_id for message_id in ids if message_id is not None]
        return []

    async def _send_partial(self, name: str, **context: Any) -> None:
        """Send a named partial of the chat page; contexts hold loaded rows, so no query runs here."""
        await self.send(text_data=_partial(name).render(context))

    async def _send_text(self, message_id: int, text: str, *, replace: bool, blocks: str = "") -> None:
        """Append streamed text to a reply (with ``replace``, make it its whole text after the formatted
        ``blocks``), in parts a frame carries: the first, beside the blocks, half a part."""
        first = TEXT_PART_CHARS // 2 if blocks else TEXT_PART_CHARS
        if replace:
            await self._send_partial("snapshot", message_id=message_id, blocks=blocks, text=text[:first])
            text = text[first:]
        if not text:
            return
        before, after = self.delta_frames.get(message_id) or self._delta_frame(message_id)
        for at in range(0, len(text), TEXT_PART_CHARS):
            await self.send(text_data=before + escape(text[at : at + TEXT_PART_CHARS]) + after)

    def _delta_frame(self, message_id: int) -> tuple[str, str]:
        """The delta partial before and after its text, rendered once per reply: each delta is then its text,
        escaped as the template would, between the two, instead of a render of its own."""
        html = _partial("delta").render({"message_id": message_id, "text": DELTA_TEXT})
        before, _, after = html.partition(DELTA_TEXT)
        self.delta_frames[message_id] = before, after
        return before, after

    async def _send_message(self, message: Message) -> None:
        """A finished message whole, or when that is more than a frame carries, a placeholder that fetches it."""
        html = _partial("message-oob").render({"message": message})
        if len(html.encode()) > FRAME_MAX_BYTES:
            html = _partial("message-fetch").render({"message": message, "conversation_id": self.conversation.pk})
        await self.send(text_data=html)


def _listed(value: Any) -> list[Any]:
    """A form field sent by ws-send: absent, one value, or a list of them."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


CHAT_EVENTS = {
    "chat.delta": ChatConsumer.chat_delta,
    "chat.snapshot": ChatConsumer.chat_snapshot,
    "chat.listening": ChatConsumer.chat_listening,
    "chat.blocks": ChatConsumer.chat_blocks,
    "chat.turn": ChatConsumer.chat_turn,
    "chat.done": ChatConsumer.chat_done,
    "chat.branch": ChatConsumer.chat_branch,
    "chat.continue": ChatConsumer.chat_continued,
}

"""The chat websocket: carries a conversation's events to the browser and the user's actions in."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone
from django.utils.safestring import mark_safe

from conversations.accounts.users import session_expiry
from conversations.chat.branches import (
    chat_branch_delete,
    chat_continue,
    chat_edit,
    chat_select,
)
from conversations.chat.frames import FRAME_MAX_BYTES, message_frame, partial, text_frames
from conversations.chat.generation.control import generation_sync
from conversations.chat.selectors import (
    branch_page,
    conversation_afind,
    conversation_leaf_id,
    message_list_of,
)
from conversations.chat.turns import chat_regenerate, chat_resume, chat_send, chat_stop
from conversations.core import events
from conversations.core.errors import ChatwebError, NotFound
from conversations.core.events import (
    CHAT_EVENTS,
    AccountCheck,
    ChatBlocks,
    ChatBranch,
    ChatContinue,
    ChatDelta,
    ChatDone,
    ChatListening,
    ChatSnapshot,
    ChatTurn,
    account_group,
    conversation_group,
)
from conversations.core.ids import row_id
from conversations.core.jsoninput import JsonInputError, json_input_parse
from conversations.core.metrics import sockets_open
from conversations.core.rendering import streaming_render
from conversations.ledger.totals import Totals, conversation_totals
from conversations.models import Conversation, Message


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints: its classes are Any
    """One browser tab on one conversation."""

    conversation: Conversation  # set by ``connect`` before the socket is accepted

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await conversation_afind(user=user, conversation_id=conversation_id)
        if conversation is None:
            await self.close(code=4404)
            return
        self.conversation = conversation
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
            await self.chat_branch(events.chat_branch())

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
        The handlers that read rows do that check in their one hop for them. Other messages go to
        Channels' ``AsyncConsumer.dispatch`` (channels 4.3.2, pinned by tests/test_pins.py):
        https://github.com/django/channels/blob/4.3.2/channels/consumer.py
        """
        handler = HANDLERS.get(message["type"])
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
        """An action from the page's ws-send forms (``ACTIONS``; ``send`` by default), refused once the session
        ended. A refusal is said above the composer (an edit's beside the edit), and what was typed stays."""
        if await self._session_expiry() is None:
            await self.close(code=4401)
            return
        data = content if isinstance(content, dict) else {}
        action = ACTIONS.get(str(data.get("action", "send")), ChatConsumer.action_send)
        try:
            await action(self, data)
        except ChatwebError as exc:
            if action is not ChatConsumer.action_edit or isinstance(exc, NotFound):
                await self._send_partial("composer-notice", notice=exc.message, oob=True)
                return
            await self._send_partial("edit-notice", notice=exc.message)  # beside the edit, which keeps what was typed
        except Conversation.DoesNotExist:  # deleted while this socket was open: 4404, which the page explains
            await self.close(code=4404)
            return
        await self._send_partial("composer-notice", notice="", oob=True)

    async def action_send(self, data: dict[str, Any]) -> None:
        await chat_send(
            conversation=self.conversation,
            content=str(data.get("message", "")),
            model_name=str(data.get("model") or "") or None,
            attachment_ids=_listed(data.get("attachments")),
        )
        await self._send_partial("composer-reset")

    async def action_stop(self, data: dict[str, Any]) -> None:
        await chat_stop(conversation=self.conversation)

    async def action_regenerate(self, data: dict[str, Any]) -> None:
        await chat_regenerate(conversation=self.conversation, message_id=data.get("message_id") or None)

    async def action_edit(self, data: dict[str, Any]) -> None:
        await chat_edit(
            conversation=self.conversation,
            message_id=data.get("message_id") or None,
            content=str(data.get("message", "")),
        )

    async def action_switch(self, data: dict[str, Any]) -> None:
        await chat_select(conversation=self.conversation, message_id=data.get("message_id") or None)

    async def action_continue(self, data: dict[str, Any]) -> None:
        await chat_continue(conversation=self.conversation, message_id=data.get("message_id") or None)

    async def action_delete(self, data: dict[str, Any]) -> None:
        await chat_branch_delete(conversation=self.conversation, message_id=data.get("message_id") or None)

    async def account_check(self, event: AccountCheck) -> None:
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
        expiry: datetime | None = await database_sync_to_async(session_expiry)(  # untyped: channels
            session_key=session.session_key if session is not None else None, user_id=self.scope["user"].pk
        )
        return expiry

    async def chat_turn(self, event: ChatTurn) -> None:
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

    async def chat_delta(self, event: ChatDelta) -> None:
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

    async def chat_listening(self, event: ChatListening) -> None:
        """A reply's generation listens now: ask it again for the text this tab still waits for."""
        if event["message_id"] in self.awaiting_snapshot:
            await generation_sync(message_ids=[event["message_id"]], reply_to=self.channel_name)

    async def chat_snapshot(self, event: ChatSnapshot) -> None:
        """Show the reply so far: its finished blocks formatted, the rest as text."""
        if event["message_id"] in self.off_path:
            return
        self.awaiting_snapshot.discard(event["message_id"])
        self.shown[event["message_id"]] = len(event["text"])
        blocks, tail = streaming_render(event["text"])
        await self._send_text(event["message_id"], tail, replace=True, blocks=blocks)

    async def chat_blocks(self, event: ChatBlocks) -> None:
        """Show the reply so far as the generation formatted it: its finished blocks rendered, the open tail."""
        message_id = event["message_id"]
        if message_id in self.off_path:
            return
        self.awaiting_snapshot.discard(message_id)
        self.shown[message_id] = event["end"] + len(event["text"])
        blocks = mark_safe(event["html"])  # noqa: S308 - rendered and sanitised by the generation (markdown_render)
        await self._send_text(message_id, event["text"], replace=True, blocks=blocks)

    async def chat_done(self, event: ChatDone) -> None:
        """Show the finished reply whole, and the conversation's new totals."""
        self.awaiting_snapshot.discard(event["message_id"])
        self.shown.pop(event["message_id"], None)
        self.delta_frames.pop(event["message_id"], None)
        self.off_path.discard(event["message_id"])
        messages, totals = await database_sync_to_async(self._finished_rows)(event["message_id"])
        for message in messages:
            await self._send_message(message)
        await self._send_partial("conversation-usage", conversation_usage=totals, oob=True)

    async def chat_branch(self, event: ChatBranch) -> None:
        """The current path changed (a version chosen, an edit, a deletion, here or in another tab): show its
        latest page whole, then the text so far of the replies streaming on it, which go on live."""
        messages, has_earlier, streaming, self.off_path = await database_sync_to_async(branch_page)(
            conversation=self.conversation
        )
        context = {
            "messages": messages,
            "has_earlier": has_earlier,
            "conversation": self.conversation,
            "anchor": event.get("anchor"),
        }
        html = partial("messages-page").render(context)
        if len(html.encode()) > FRAME_MAX_BYTES:  # the tab fetches the page over HTTP instead
            html = partial("messages-page").render({**context, "fetch": True})
        await self.send(text_data=html)
        self.awaiting_snapshot.update(streaming)
        await generation_sync(message_ids=streaming, reply_to=self.channel_name)

    async def chat_continue(self, event: ChatContinue) -> None:
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

    async def _send_text(self, message_id: int, text: str, *, replace: bool, blocks: str = "") -> None:
        for frame in text_frames(message_id, text, replace=replace, blocks=blocks, delta_frames=self.delta_frames):
            await self.send(text_data=frame)

    async def _send_message(self, message: Message) -> None:
        await self.send(text_data=message_frame(message, conversation_id=self.conversation.pk))

    async def _send_partial(self, name: str, **context: Any) -> None:
        """Send a named partial of the chat page; contexts hold loaded rows, so no query runs here."""
        await self.send(text_data=partial(name).render(context))


def _listed(value: Any) -> list[Any]:
    """A form field sent by ws-send: absent, one value, or a list of them."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


# What the page asks for, by the ``action`` of its ws-send forms.
ACTIONS = {
    "send": ChatConsumer.action_send,
    "stop": ChatConsumer.action_stop,
    "regenerate": ChatConsumer.action_regenerate,
    "edit": ChatConsumer.action_edit,
    "switch": ChatConsumer.action_switch,
    "continue": ChatConsumer.action_continue,
    "delete": ChatConsumer.action_delete,
}
# The conversation's events (``core.events``), each handled by the method of its name.
HANDLERS = {name: getattr(ChatConsumer, name.replace(".", "_")) for name in CHAT_EVENTS}

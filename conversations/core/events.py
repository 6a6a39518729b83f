"""Every event sent over the channel layer, each defined once with one constructor.

Three kinds of groups carry them:
- ``conversation_group``: every socket open on a conversation, on any worker, gets ``chat.*``;
  the chat consumer has a handler of the same name for each (``chat.delta``: ``chat_delta``);
- ``generation_group``: the control channel of a reply being generated gets ``generation.*``;
- ``account_group``: every socket a user has open gets ``account.*``.

Events are plain dicts, as the channel layer carries them (msgpack over Redis), typed here so that
a producer and the consumer cannot disagree on a key.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from channels.layers import get_channel_layer


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def generation_group(message_id: int) -> str:
    return f"generation-{message_id}"


def account_group(*, user_id: int) -> str:
    """The channel-layer group of every socket the user has open, on any worker."""
    return f"account-{user_id}"


class ChatTurn(TypedDict):
    """Messages were added to the conversation; ``replaces``: the message a regenerated reply stands for."""

    type: Literal["chat.turn"]
    message_ids: list[int]
    title: str
    replaces: int | None


class ChatDelta(TypedDict):
    """New text of a streaming reply, and where it starts, so a socket can tell a gap or a repeat."""

    type: Literal["chat.delta"]
    message_id: int
    text: str
    start: int


class ChatBlocks(TypedDict):
    """The reply so far: its finished Markdown blocks up to ``end`` rendered (``html``), the open tail as text."""

    type: Literal["chat.blocks"]
    message_id: int
    html: str
    end: int
    text: str


class ChatSnapshot(TypedDict):
    """The text of a streaming reply so far, for a socket that joins (or rejoins) mid-reply."""

    type: Literal["chat.snapshot"]
    message_id: int
    text: str


class ChatListening(TypedDict):
    """A reply's generation answers sync requests now: a socket that asked before asks again."""

    type: Literal["chat.listening"]
    message_id: int


class ChatDone(TypedDict):
    """A reply reached its terminal state (complete, stopped, error, interrupted)."""

    type: Literal["chat.done"]
    message_id: int


class ChatBranch(TypedDict):
    """The current path changed; ``anchor``: the message the change is about, which a tab keeps in view."""

    type: Literal["chat.branch"]
    anchor: int | None


class ChatContinue(TypedDict):
    """A reply streams again (Continue)."""

    type: Literal["chat.continue"]
    message_id: int


class GenerationStop(TypedDict):
    type: Literal["generation.stop"]


class GenerationSync(TypedDict):
    """Send the text so far to the channel ``reply_to``."""

    type: Literal["generation.sync"]
    reply_to: str


class AccountCheck(TypedDict):
    """Check that the socket's session still signs its user in; close if not."""

    type: Literal["account.check"]


ChatEvent = ChatTurn | ChatDelta | ChatBlocks | ChatSnapshot | ChatListening | ChatDone | ChatBranch | ChatContinue
GenerationEvent = GenerationStop | GenerationSync
Event = ChatEvent | GenerationEvent | AccountCheck

# The events a conversation's sockets are sent, each handled by the consumer's method of the same name.
CHAT_EVENTS = (
    "chat.turn",
    "chat.delta",
    "chat.blocks",
    "chat.snapshot",
    "chat.listening",
    "chat.done",
    "chat.branch",
    "chat.continue",
)


def chat_turn(*, message_ids: list[int], title: str, replaces: int | None = None) -> ChatTurn:
    return {"type": "chat.turn", "message_ids": message_ids, "title": title, "replaces": replaces}


def chat_delta(*, message_id: int, text: str, start: int) -> ChatDelta:
    return {"type": "chat.delta", "message_id": message_id, "text": text, "start": start}


def chat_blocks(*, message_id: int, html: str, end: int, text: str) -> ChatBlocks:
    return {"type": "chat.blocks", "message_id": message_id, "html": html, "end": end, "text": text}


def chat_snapshot(*, message_id: int, text: str) -> ChatSnapshot:
    return {"type": "chat.snapshot", "message_id": message_id, "text": text}


def chat_listening(*, message_id: int) -> ChatListening:
    return {"type": "chat.listening", "message_id": message_id}


def chat_done(*, message_id: int) -> ChatDone:
    return {"type": "chat.done", "message_id": message_id}


def chat_branch(*, anchor: int | None = None) -> ChatBranch:
    return {"type": "chat.branch", "anchor": anchor}


def chat_continue(*, message_id: int) -> ChatContinue:
    return {"type": "chat.continue", "message_id": message_id}


def generation_stop_event() -> GenerationStop:
    return {"type": "generation.stop"}


def generation_sync_event(*, reply_to: str) -> GenerationSync:
    return {"type": "generation.sync", "reply_to": reply_to}


def account_check() -> AccountCheck:
    return {"type": "account.check"}


async def event_publish(group: str, event: Event) -> None:
    """Send ``event`` to every member of ``group``, on any worker."""
    await get_channel_layer().group_send(group, event)

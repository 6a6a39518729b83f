"""The in-memory channel layer for one process, made to scale with open sockets.

Its methods replace those of Channels' ``InMemoryChannelLayer`` (channels 4.3.2,
https://github.com/django/channels/blob/4.3.2/channels/layers.py); tests/test_layers.py
fails when those change upstream, so that this copy is looked at again.
"""

import asyncio
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):  # type: ignore[misc]  # channels ships no types
    """Channels' in-memory layer, without the work it repeats for every message.

    With hundreds of sockets streaming, Channels' version spent most of a worker's time
    (bench/streams.py) sweeping every channel and group for expired messages on each send
    and receive, starting a task per recipient of a group message, deep-copying each
    message for each recipient, and making a new queue for every send and receive. Here
    the sweep runs at most once a second, group messages go straight to each queue, a
    queue is made only for a channel that has none, and each recipient gets its own copy
    of the message's dict: the events chatweb sends hold strings, numbers and lists that
    no handler changes. Expired messages may linger up to a second longer: harmless.
    """

    # What Channels' __init__ sets and these methods use (the base class is untyped).
    channels: dict[str, asyncio.Queue[tuple[float, dict[str, Any]]]]
    groups: dict[str, dict[str, float]]
    expiry: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_INTERVAL:
            self._cleaned_at = now
            super()._clean_expired()

    def _queue(self, channel: str) -> asyncio.Queue[tuple[float, dict[str, Any]]]:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        self.require_valid_channel_name(channel)
        self._put(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):  # names checked when they joined
            try:
                self._put(channel, message)
            except ChannelFull:
                pass

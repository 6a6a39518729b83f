"""The in-memory channel layer for one process, without its per-message full sweeps."""

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """Channels' in-memory layer, made to scale with open sockets.

    Channels' version sweeps every channel and group for expired messages on each
    send and receive, and starts a task per recipient of a group message; with
    hundreds of sockets streaming, that dominated the server's time (bench/streams.py).
    Here the sweep runs at most once a second and group messages go straight to
    each queue. Expired messages may linger up to a second longer: harmless.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cleaned_at = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_INTERVAL:
            self._cleaned_at = now
            super()._clean_expired()

    async def group_send(self, group, message):
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass

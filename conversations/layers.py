"""Channel layers made to scale with open sockets: in memory for one process, Redis pub/sub for several.

The in-memory layer's methods replace those of Channels' ``InMemoryChannelLayer`` (channels 4.3.2,
https://github.com/django/channels/blob/4.3.2/channels/layers.py); the pub/sub layer's receive
loop replaces channels-redis's (4.3.0, https://github.com/django/channels_redis/blob/4.3.0/channels_redis/pubsub.py).
tests/test_layers.py fails when those change upstream, so that these copies are looked at again.
"""

import asyncio
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis import pubsub
from channels_redis.utils import _wrap_close
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .outages import retry_delay

CLEAN_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cleaned_at = 0.0

    def _clean_expired(self):
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_INTERVAL:
            self._cleaned_at = now
            super()._clean_expired()

    def _queue(self, channel):
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _put(self, channel, message):
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        self.require_valid_channel_name(channel)
        self._put(channel, message)

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    async def group_send(self, group, message):
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):  # names checked when they joined
            try:
                self._put(channel, message)
            except ChannelFull:
                pass


class RedisPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer, which tells every waiting receiver when Redis is lost.

    A group send is one PUBLISH, and each worker reads its subscriptions on one connection
    and hands messages to its tabs in process: several times cheaper per streamed piece
    than the list-based ``RedisChannelLayer`` (bench/RESULTS.md). Its receive loop only
    logged a lost connection, so tabs stayed open, deaf to what was sent meanwhile (the end
    of a reply among it). Here each receive waiting then raises ``ConnectionError``, as the
    list-based layer's did: tabs close with the outage code and reconnect, a generation's
    listener rejoins its group, and every group is joined anew. The loop-layer and shard
    classes are channels-redis 4.3.0's (tests/test_layers.py fails when they change).
    """

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _PubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer

    def deserialize(self, message):
        if message is CONNECTION_LOST:
            raise RedisConnectionError("The connection to Redis was lost.")
        return super().deserialize(message)


CONNECTION_LOST = object()  # put in every receiver's queue when a shard's connection fails


class _PubSubLoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]

    async def group_add(self, group, channel):
        if channel not in self.channels:  # a receiver that outlived a lost connection joins again
            await self._subscribe_to_channel(channel)
        await super().group_add(group, channel)


class _Shard(pubsub.RedisSingleShardConnection):
    async def _do_receiving(self):
        attempt = 0
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
                attempt = 0
            except (RedisError, OSError):
                if attempt == 0:
                    self._connection_lost()
                await asyncio.sleep(retry_delay(attempt=attempt))
                attempt += 1

    def _connection_lost(self):
        """Every receiver raises; groups are forgotten, as their members either close or join again."""
        layer = self.channel_layer
        for queue in layer.channels.values():
            queue.put_nowait(CONNECTION_LOST)
        layer.groups.clear()

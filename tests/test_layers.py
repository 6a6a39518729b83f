"""The channel layers (conversations/layers.py): what every tab relies on, in one worker or several."""

import asyncio
import hashlib
import inspect
import shutil

import pytest
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer
from channels_redis import pubsub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from conversations.layers import InMemoryChannelLayer, RedisPubSubChannelLayer
from tests.outage import RedisServer

# Channels 4.3.2's methods that conversations/layers.py replaces: when one changes upstream,
# this fails, so that the copy is compared with the new version and this list updated.
UPSTREAM = {
    "send": "a4dab1cd8aff886e",
    "receive": "e615f8ae40b60e12",
    "group_send": "693c3172deb6431b",
    "_clean_expired": "604032dae1cc01d2",
}


# channels-redis 4.3.0's pub/sub methods that conversations/layers.py replaces or relies on the inner
# workings of (a receive hands what it dequeued to ``deserialize``; messages reach queues one way).
UPSTREAM_PUBSUB = {
    (pubsub.RedisPubSubChannelLayer, "_get_layer"): "1862b87a25ac72b2",
    (pubsub.RedisPubSubChannelLayer, "deserialize"): "efb14181c02c1adf",
    (pubsub.RedisSingleShardConnection, "_do_receiving"): "a822736dcb875e43",
    (pubsub.RedisSingleShardConnection, "_receive_message"): "2f5f46af28e8ed76",
    (pubsub.RedisPubSubLoopLayer, "receive"): "2d3fa7938ba6e0a6",
    (pubsub.RedisPubSubLoopLayer, "group_add"): "09e5aeb8954a88f2",
}


def _source_hash(owner: type, name: str) -> str:
    return hashlib.sha256(inspect.getsource(getattr(owner, name)).encode()).hexdigest()[:16]


def test_the_replaced_methods_are_still_channels_4_3_2s():
    assert {name: _source_hash(ChannelsInMemoryChannelLayer, name) for name in UPSTREAM} == UPSTREAM


def test_the_pub_sub_methods_are_still_channels_redis_4_3_0s():
    assert {key: _source_hash(*key) for key in UPSTREAM_PUBSUB} == UPSTREAM_PUBSUB


async def test_a_group_message_reaches_every_tab_once_each_with_its_own_copy():
    layer = InMemoryChannelLayer(capacity=10)
    tabs = [await layer.new_channel() for _ in range(3)]
    for tab in tabs:
        await layer.group_add("conversation-1", tab)
    await layer.group_add("conversation-2", await layer.new_channel())

    await layer.group_send("conversation-1", {"type": "chat.delta", "text": "Hello", "start": 0})
    received = [await asyncio.wait_for(layer.receive(tab), 1) for tab in tabs]
    received[0]["text"] = "changed by the first tab"

    assert [message["text"] for message in received[1:]] == ["Hello", "Hello"]
    for tab in tabs:  # nothing more for anyone
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(tab), 0.05)


async def test_a_full_tab_misses_group_messages_while_the_others_get_them_in_order():
    layer = InMemoryChannelLayer(capacity=2)
    slow, fast = await layer.new_channel(), await layer.new_channel()
    for tab in (slow, fast):
        await layer.group_add("conversation-1", tab)

    for start in range(3):
        await layer.group_send("conversation-1", {"type": "chat.delta", "text": "x", "start": start})
        if start < 2:
            assert (await layer.receive(fast))["start"] == start

    assert (await layer.receive(fast))["start"] == 2
    assert [(await layer.receive(slow))["start"] for _ in range(2)] == [0, 1]


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
async def test_on_pub_sub_a_lost_redis_fails_waiting_receivers_and_a_rejoined_one_hears_again(tmp_path):
    redis = RedisServer(tmp_path).start()
    layer = RedisPubSubChannelLayer(hosts=[{"address": redis.url, "socket_connect_timeout": 1}], prefix="test")
    try:
        tab = await layer.new_channel()
        await layer.group_add("conversation-1", tab)
        await layer.group_send("conversation-1", {"type": "chat.delta", "text": "before"})
        assert (await asyncio.wait_for(layer.receive(tab), 5))["text"] == "before"

        waiting = asyncio.create_task(layer.receive(tab))
        redis.kill()
        with pytest.raises(RedisConnectionError):  # as a tab's receive did on the list-based layer: it closes
            await asyncio.wait_for(waiting, 10)

        redis.start()
        async with asyncio.timeout(20):  # joining again works once Redis is back, as the generation's listener does
            while True:
                try:
                    await layer.group_add("conversation-1", tab)
                    await layer.group_send("conversation-1", {"type": "chat.delta", "text": "after"})
                    break
                except RedisError:
                    await asyncio.sleep(0.2)
        assert (await asyncio.wait_for(layer.receive(tab), 5))["text"] == "after"
    finally:
        await layer.flush()
        redis.stop()

"""The in-memory channel layer (conversations/layers.py): what every tab of one worker relies on."""

import asyncio
import hashlib
import inspect

import pytest
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

from conversations.core.layers import InMemoryChannelLayer

# Channels 4.3.2's methods that conversations/layers.py replaces: when one changes upstream,
# this fails, so that the copy is compared with the new version and this list updated.
UPSTREAM = {
    "send": "a4dab1cd8aff886e",
    "receive": "e615f8ae40b60e12",
    "group_send": "693c3172deb6431b",
    "_clean_expired": "604032dae1cc01d2",
}


def test_the_replaced_methods_are_still_channels_4_3_2s():
    found = {
        name: hashlib.sha256(inspect.getsource(getattr(ChannelsInMemoryChannelLayer, name)).encode()).hexdigest()[:16]
        for name in UPSTREAM
    }
    assert found == UPSTREAM


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

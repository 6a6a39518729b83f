"""The in-memory channel layer's cost per streamed piece, in-process: a group send and its receive.

Channels' own InMemoryChannelLayer against chatweb's (conversations/layers.py), alternating,
on one delta-sized event to a group of one tab, as a streaming reply sends each piece.

    .venv/bin/python bench/layer.py [--rounds 3] [--messages 20000] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

from channels.layers import InMemoryChannelLayer as ChannelsLayer  # noqa: E402

from conversations.core.layers import InMemoryChannelLayer as ChatwebLayer  # noqa: E402

EVENT = {"type": "chat.delta", "message_id": 12345, "text": "tok @1700000000.123456 ", "start": 100}


async def per_message_us(layer_class: type, messages: int) -> float:
    layer = layer_class(capacity=1500, expiry=60)
    tab = await layer.new_channel()
    await layer.group_add("conversation-1", tab)
    started = time.perf_counter()
    for _ in range(messages):
        await layer.group_send("conversation-1", EVENT)
        await layer.receive(tab)
    return (time.perf_counter() - started) / messages * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--smoke", action="store_true", help="one round of 1,000: that it runs, not figures")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.messages = 1, 1000
    for round_ in range(1, args.rounds + 1):
        figures = {
            name: await per_message_us(cls, args.messages)
            for name, cls in (("Channels' layer", ChannelsLayer), ("chatweb's layer", ChatwebLayer))
        }
        print(
            f"round {round_}: "
            + ", ".join(f"{name} {us:.1f} µs" for name, us in figures.items())
            + " per group send and receive"
        )


if __name__ == "__main__":
    asyncio.run(main())

"""Bench: the bundled local model asked directly versus through chatweb's chat path.

Starts the SmolLM2 server on a free loopback port, then for each prompt measures
time to first token and tokens per second (1) streaming straight from the server
with httpx and (2) through chatweb: websocket message -> consumer -> generation
task -> completions service -> channel layer -> websocket. Uses a throwaway SQLite
database, and prints figures; it asserts nothing.

    .venv/bin/python bench/local_model.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["CHATWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="chatweb-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from conversations.localmodel import MODEL_ALIAS, server_command, server_environment  # noqa: E402
from conversations.models import ChatModel, Conversation, Message, Provider  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

PROMPTS = [
    "Write three sentences about the sea.",
    "Explain what a database index is, briefly.",
    "List five fruits and one fact about each.",
]
MAX_TOKENS_NOTE = "replies are as long as the model makes them (no max_tokens)"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def direct(base_url: str, prompt: str) -> tuple[float, int, float]:
    """(seconds to first token, tokens, seconds total) streaming straight from the server."""
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": prompt}], "stream": True, "seed": 1,
            "temperature": 0}
    start = time.perf_counter()
    first, tokens = None, 0
    async with httpx.AsyncClient(timeout=120) as client:
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        tokens += 1
                        first = first or time.perf_counter()
    return (first or start) - start, tokens, time.perf_counter() - start


async def through_chatweb(user, model, prompt: str) -> tuple[float, int, float]:
    """The same through the chat websocket, timed from send to first delta and to done."""
    conversation = await Conversation.objects.acreate(user=user, model=model)
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/c/{conversation.pk}/")
    communicator.scope["user"] = user
    await communicator.connect()
    start = time.perf_counter()
    await communicator.send_json_to({"message": prompt})
    first = None
    while True:
        html = await communicator.receive_from(timeout=120)
        if "beforeend:#message-" in html and first is None:
            first = time.perf_counter()
        if 'class="message assistant" data-status=' in html and 'data-status="streaming"' not in html:
            break
    total = time.perf_counter() - start
    await communicator.disconnect()
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    return (first or start) - start, reply.completion_tokens or 0, total


def summarise(name: str, rows: list[tuple[float, int, float]]) -> float:
    ttft = [r[0] * 1000 for r in rows]
    rates = [r[1] / (r[2] - r[0]) for r in rows if r[2] > r[0] and r[1] > 1]
    rate = statistics.median(rates) if rates else 0.0
    print(f"{name:>10}: first token p50 {statistics.median(ttft):7.1f} ms (min {min(ttft):.1f}, max {max(ttft):.1f}); "
          f"{rate:6.1f} tokens/s median; {sum(r[1] for r in rows)} tokens in {len(rows)} replies")
    return rate


async def main(rounds: int) -> None:
    port = free_port()
    server = subprocess.Popen(server_command(port=port), env=server_environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base_url}/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        user = await get_user_model().objects.acreate(username="bench")
        provider = await Provider.objects.acreate(name="Local", base_url=base_url)
        model = await ChatModel.objects.acreate(name=MODEL_ALIAS, provider=provider, upstream_model=MODEL_ALIAS)
        await direct(base_url, "warm up")
        direct_rows, chat_rows = [], []
        for i in range(rounds):
            prompt = PROMPTS[i % len(PROMPTS)]
            # Alternate which goes first so neither always gets a warmer cache.
            if i % 2:
                chat_rows.append(await through_chatweb(user, model, prompt))
                direct_rows.append(await direct(base_url, prompt))
            else:
                direct_rows.append(await direct(base_url, prompt))
                chat_rows.append(await through_chatweb(user, model, prompt))
        print(f"SmolLM2-135M via llama.cpp, {os.cpu_count()} cores, {rounds} rounds; {MAX_TOKENS_NOTE}")
        d = summarise("direct", direct_rows)
        c = summarise("chatweb", chat_rows)
        if d:
            print(f"chatweb / direct tokens per second: {c / d:.3f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="two rounds only")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    asyncio.run(main(2 if args.quick else args.rounds))

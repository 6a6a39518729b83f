"""Bench: the bundled local model asked directly versus through chatweb's chat path.

Starts the SmolLM2 server on a free loopback port and asks it each round's question
twice, alternating which goes first: (1) straight from the server with httpx
streaming, (2) through chatweb: websocket message -> consumer -> generation task ->
completions service -> channel layer -> websocket.

Both ask the server for the same thing: the body chatweb sends (the conversation's
messages and stream_options; a conversation carries no system prompt, temperature or
seed, and the bench's model no max_tokens, so both sample with the server's defaults).
So that both also get the same reply, a one-token request with the round's seed goes
just before each (llama-cpp-python seeds an unseeded request from the previous
request's seed), and the server's context of CONTEXT tokens bounds the reply. Both replies are counted with the model's own tokenizer, as
chatweb counts them (llama.cpp's streams report no usage), and timed from the request
to the first and the last piece of text; tokens/s is over the time between them. Also
printed: this process's CPU per token (the client's, and on the chat side chatweb's),
which other load on the machine moves less than it moves wall time, and a TARGET line
(chatweb >= 0.98 of direct tokens/s, on summed tokens over summed time).

Uses a throwaway SQLite database, prints figures and asserts nothing. The server runs
in a process group of its own, killed on every way out (error, Ctrl-C, SIGTERM).

    .venv/bin/python bench/local_model.py [--rounds 6] [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["CHATWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="chatweb-bench-")
atexit.register(shutil.rmtree, os.environ["CHATWEB_DATA_DIR"], ignore_errors=True)
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from _common import free_port  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import AbstractBaseUser  # noqa: E402
from django.contrib.sessions.backends.base import SessionBase  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from conversations.chat.sockets import websocket_urlpatterns  # noqa: E402
from conversations.models import ChatModel, Conversation, Message, Provider  # noqa: E402
from conversations.providers.localmodel import MODEL_ALIAS, server_command, server_environment  # noqa: E402
from conversations.providers.tokens import tokens_count  # noqa: E402

PROMPTS = [
    "Write a long story about the sea.",
    "Explain in detail what a database index is and how it works.",
    "List ten fruits and one fact about each.",
]
CONTEXT = 256  # the server's context: prompt plus reply, so a reply has at most ~220 tokens
TARGET = 0.98


@dataclass(frozen=True)
class Reply:
    """One timed reply: seconds from the request to its first and last piece of text and to its end,
    and the CPU seconds this process spent on it (the client's, plus chatweb's on the chat side)."""

    first: float
    last: float
    end: float
    cpu: float
    text: str
    tokens: int

    @property
    def generating(self) -> float:
        return self.last - self.first

    @property
    def rate(self) -> float:
        """Tokens per second after the first."""
        return (self.tokens - 1) / self.generating if self.generating > 0 else 0.0


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """The model's server on a free port, yielding its base URL; its process group is killed on the way out."""
    port = free_port()
    server = subprocess.Popen(
        server_command(port=port, context=CONTEXT),
        env=server_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        while server.poll() is None:
            try:
                httpx.get(f"{base_url}/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"The model's server exited with {server.returncode}.")
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def exit_on_signal(signum: int, _frame: object) -> NoReturn:
    """Turn SIGTERM (from `timeout`, say) into SystemExit, so the server is killed on the way out."""
    raise SystemExit(128 + signum)


def request_body(prompt: str) -> dict[str, object]:
    """What chatweb's generation sends for a new conversation's first message (completions service)."""
    return {
        "messages": [{"role": "user", "content": prompt}],
        "stream_options": {"include_usage": True},
        "model": MODEL_ALIAS,
        "stream": True,
    }


async def reseed(client: httpx.AsyncClient, seed: int) -> None:
    """Make the server's next unseeded request sample with a seed that follows from ``seed``."""
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "seed": seed, "max_tokens": 1}
    (await client.post("/chat/completions", json=body)).raise_for_status()


async def direct(client: httpx.AsyncClient, prompt: str) -> Reply:
    """Stream the reply straight from the server."""
    start, cpu = time.perf_counter(), time.process_time()
    first = last = 0.0
    text = ""
    async with client.stream("POST", "/chat/completions", json=request_body(prompt)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices") or []:
                if piece := (choice.get("delta") or {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
                    text += piece
    end, cpu = time.perf_counter(), time.process_time() - cpu
    return Reply(first - start, last - start, end - start, cpu, text, tokens_count(text))


def signed_in_session(user: AbstractBaseUser) -> SessionBase:
    """A session signing ``user`` in, as the login page leaves it: the chat socket checks it on every message."""
    client = Client()
    client.force_login(user, backend="conversations.accounts.auth.PasswordBackend")
    return import_module(settings.SESSION_ENGINE).SessionStore(client.session.session_key)


async def through_chatweb(user: AbstractBaseUser, session: SessionBase, model: ChatModel, prompt: str) -> Reply:
    """The same through the chat websocket of a new conversation; its end is the finished reply's swap."""
    conversation = await Conversation.objects.acreate(user=user, model=model)
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/c/{conversation.pk}/")
    communicator.scope["user"] = user
    communicator.scope["session"] = session
    await communicator.connect()
    start, cpu = time.perf_counter(), time.process_time()
    first = last = 0.0
    await communicator.send_json_to({"message": prompt})
    while True:
        html = await communicator.receive_from(timeout=120)
        if "beforeend:#message-" in html:
            last = time.perf_counter()
            first = first or last
        elif 'class="message assistant"' in html and 'data-status="streaming"' not in html:
            break
    end, cpu = time.perf_counter(), time.process_time() - cpu
    await communicator.disconnect()
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    if reply.status != Message.Status.COMPLETE:
        raise RuntimeError(f"The chat reply ended {reply.status}: {reply.error}")
    return Reply(first - start, last - start, end - start, cpu, reply.content, tokens_count(reply.content))


def summarise(name: str, rows: list[Reply]) -> float:
    """Print one side's figures; returns its tokens/s median."""
    ttft = [r.first * 1000 for r in rows]
    rates = [r.rate for r in rows]
    ending = [(r.end - r.last) * 1000 for r in rows]
    tokens = sum(r.tokens for r in rows)
    print(
        f"{name:>8}: first token p50 {statistics.median(ttft):6.1f} ms (min {min(ttft):.1f}, max {max(ttft):.1f}); "
        f"{statistics.median(rates):5.1f} tokens/s p50 (min {min(rates):.1f}, max {max(rates):.1f}); "
        f"last token to end p50 {statistics.median(ending):5.1f} ms; {tokens} tokens; "
        f"CPU here {sum(r.cpu for r in rows) * 1000 / tokens:.2f} ms/token"
    )
    return statistics.median(rates)


def summed_rate(rows: list[Reply]) -> float:
    """Tokens per second over all the replies' generating time: steadier than a median of rates."""
    return sum(r.tokens - 1 for r in rows) / sum(r.generating for r in rows)


async def main(base_url: str, rounds: int) -> None:
    user = await get_user_model().objects.acreate(username="bench")
    session = await sync_to_async(signed_in_session)(user)
    provider = await Provider.objects.acreate(name="Local", base_url=base_url)
    model = await ChatModel.objects.acreate(name=MODEL_ALIAS, provider=provider, upstream_model=MODEL_ALIAS)
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        # First uses (model pages, tokenizer, templates, connections) stay out of the figures.
        await direct(client, "Hi")
        await through_chatweb(user, session, model, "Hi")
        sides: dict[str, Callable[[str], Awaitable[Reply]]] = {
            "direct": lambda prompt: direct(client, prompt),
            "chatweb": lambda prompt: through_chatweb(user, session, model, prompt),
        }
        rows: dict[str, list[Reply]] = {name: [] for name in sides}
        for i in range(rounds):
            prompt = PROMPTS[i % len(PROMPTS)]
            # Alternate which goes first so neither always follows the other.
            for name in list(sides)[:: 1 if i % 2 == 0 else -1]:
                await reseed(client, seed=i + 1)
                rows[name].append(await sides[name](prompt))
            d, c = rows["direct"][-1], rows["chatweb"][-1]
            print(
                f"round {i + 1}: {d.tokens} / {c.tokens} tokens{'' if d.text == c.text else ' (replies differ)'}; "
                f"direct {d.rate:.1f}, chatweb {c.rate:.1f} tokens/s; ratio {c.rate / d.rate:.3f}"
            )
    same = sum(d.text == c.text for d, c in zip(rows["direct"], rows["chatweb"]))
    print(
        f"SmolLM2-135M via llama.cpp, {os.cpu_count()} cores, server's sampling defaults, {CONTEXT}-token context; "
        f"the same reply on both sides in {same} of {rounds} rounds"
    )
    d = summarise("direct", rows["direct"])
    c = summarise("chatweb", rows["chatweb"])
    summed = summed_rate(rows["chatweb"]) / summed_rate(rows["direct"])
    print(f"chatweb / direct tokens/s: {c / d:.3f} (medians), {summed:.3f} (summed tokens / summed time)")
    print(
        f"TARGET chatweb >= {TARGET} x direct tokens/s: {'met' if summed >= TARGET else 'NOT met'} "
        f"({summed:.3f}, summed)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="two rounds only")
    parser.add_argument("--smoke", action="store_true", help="one round: that it runs, not figures")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, exit_on_signal)
    logging.getLogger("chatweb.completions").setLevel(logging.WARNING)  # a line per reply would bury the figures
    call_command("migrate", verbosity=0)
    with local_server() as url:
        asyncio.run(main(url, 1 if args.smoke else 2 if args.quick else args.rounds))

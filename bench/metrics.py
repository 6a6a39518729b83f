"""What counting a /v1 call in the Prometheus metrics costs, in-process: the calls one call makes.

A streamed /v1 call makes one ``http_observe`` (the request), one ``completion_observe`` (the
completion ended) and passes each chunk through metering's ``_observed`` wrapper; a scrape
renders every series. Each is timed over many repetitions and printed in microseconds, to
compare with the server CPU per call that bench/gateway.py prints (milliseconds).

    .venv/bin/python bench/metrics.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")

import django  # noqa: E402

django.setup()

from django.test import RequestFactory  # noqa: E402
from django.urls import resolve  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402

from conversations.core import metrics  # noqa: E402
from conversations.ledger.metering import calls as metering  # noqa: E402


def per_call_us(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def chunks(count: int):
    for i in range(count):
        yield {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}


async def drain(stream) -> None:
    async for _ in stream:
        pass


def per_chunk_us(n_chunks: int, rounds: int) -> float:
    """The wrapper's added time per chunk: the same stream read through it and straight."""
    loop = asyncio.new_event_loop()
    metered = metering.Metered(model=None, name="bench-model", user_id=1, source="api", record=None)

    def timed(wrapped: bool) -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            metered.first_content_at = None
            stream = metering._observed(metered, chunks(n_chunks)) if wrapped else chunks(n_chunks)
            loop.run_until_complete(drain(stream))
        return time.perf_counter() - start

    timed(True), timed(False)  # warm up
    straight, wrapped = min(timed(False) for _ in range(3)), min(timed(True) for _ in range(3))
    loop.close()
    return (wrapped - straight) / (rounds * n_chunks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--smoke", action="store_true", help="a thousand repetitions: that it runs, not figures")
    args = parser.parse_args()
    n = 1_000 if args.smoke else 20_000 if args.quick else 200_000
    request = RequestFactory().post("/v1/chat/completions")
    request.resolver_match = resolve("/v1/chat/completions")
    http = per_call_us(lambda: metrics.http_observe(request, 200, 0.004), n)
    completion = per_call_us(
        lambda: metrics.completion_observe(
            model="bench-model",
            deployment="Bench / bench-upstream",
            source="api",
            status="completed",
            user_id=1,
            seconds=0.004,
            first_token_seconds=0.002,
            prompt_tokens=12,
            completion_tokens=20,
            cost_usd=Decimal("0.0001"),
        ),
        n,
    )
    chunk = per_chunk_us(n_chunks=20, rounds=n // 20)
    scrape = per_call_us(generate_latest, max(n // 100, 100))
    print(f"http_observe per request:         {http:6.2f} us")
    print(f"completion_observe per completion: {completion:6.2f} us")
    print(f"stream wrapper per chunk:          {chunk:6.2f} us")
    print(f"per streamed /v1 call of 20 chunks: {http + completion + 20 * chunk:6.2f} us")
    print(f"a scrape (generate_latest):        {scrape:6.0f} us")


if __name__ == "__main__":
    main()

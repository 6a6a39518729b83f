"""Bench 1: what chatweb's /v1 adds on top of the provider.

A fast loopback provider (bench/_upstream.py, its own process) answers instantly with a
fixed 20-piece reply. The same chat completion requests go straight to it and through
chatweb's /v1 (one Daphne worker, SQLite, the in-memory channel layer), in one run,
alternating target phase by phase. The client is a small keep-alive HTTP/1.1 client on
raw asyncio streams (one connection per concurrent worker), so that its own cost stays
small next to what is measured; one request per target goes through the official
``openai`` SDK first, as a check that the gateway answers the SDK.

For concurrency 1, 10 and 100 it prints, per target, latency p50/p95/p99 for
non-streaming requests and time to first token (first content byte) for streaming
ones, the added latency (gateway minus direct, percentile by percentile), and requests
per second. A third target, an ASGI app that does nothing served by Daphne
(bench/_floor.py), shows how much of the added latency is the server's own HTTP
handling. The client, provider and servers share this machine's cores.

    .venv/bin/python bench/gateway.py [--quick | --smoke] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, PYTHON, Chatweb, bench_setup, free_port, machine, pct, wait_listening  # noqa: E402


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)

    async def request(self, raw: bytes, stream: bool) -> tuple[float, float, int]:
        """Send one request; returns (seconds to first content, seconds to the end, status)."""
        if self.writer is None or self.writer.is_closing():
            await self._open()
        assert self.reader is not None and self.writer is not None
        start = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        first = None
        if length is not None:
            await self.reader.readexactly(length)
            first = time.perf_counter()
        elif chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if first is None and (not stream or b'"content": "t' in data or b'"content":"t' in data):
                    first = time.perf_counter()
                if size == 0:
                    break
        else:
            await self.reader.read()
            close = True
        end = time.perf_counter()
        if close:
            self.writer.close()
            self.writer = None
        return (first or end) - start, end - start, status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def build_request(path: str, body: dict, key: str | None) -> bytes:
    data = json.dumps(body).encode()
    headers = [
        f"POST {path} HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        f"content-length: {len(data)}",
    ]
    if key:
        headers.append(f"authorization: Bearer {key}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + data


async def phase(conns: list[Conn], raw: bytes, stream: bool, total: int) -> tuple[list[float], float, int]:
    """``total`` requests over ``len(conns)`` workers; returns per-request latencies, seconds, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker(conn: Conn) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            try:
                first, end, status = await conn.request(raw, stream)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                errors += 1
                conn.writer = None
                print("  request failed:", repr(exc), file=sys.stderr)
                continue
            if status != 200:
                errors += 1
                continue
            latencies.append(first if stream else end)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return latencies, time.perf_counter() - start, errors


async def run(args: argparse.Namespace, up_port: int, floor_port: int, app: Chatweb, key: str, model: str) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "Say something."}]}
    targets = {
        "direct": (up_port, "/v1/chat/completions", None),
        "daphne": (floor_port, "/v1/chat/completions", None),
        "gateway": (app.port, "/v1/chat/completions", key),
    }
    results: dict = {}
    server = app.stats()
    for concurrency, per_phase in zip(args.concurrency, args.requests):
        for stream in (False, True):
            b = {**body, "stream": True} if stream else body
            raws = {name: build_request(path, b, k) for name, (_, path, k) in targets.items()}
            conns = {name: [Conn(port) for _ in range(concurrency)] for name, (port, _, _) in targets.items()}
            for name in targets:  # warm up: open the connections, fill caches
                await phase(conns[name], raws[name], stream, max(concurrency, 20))
            lat: dict[str, list[float]] = {name: [] for name in targets}
            secs = dict.fromkeys(targets, 0.0)
            count = dict.fromkeys(targets, 0)
            errors = dict.fromkeys(targets, 0)
            cpu_gw = 0.0
            sql0 = app.sql_counts()
            for r in range(args.rounds):
                order = list(targets)[r % 3 :] + list(targets)[: r % 3]  # each target takes its turn first
                for name in order:
                    cpu0 = server.cpu_seconds()
                    got, took, errs = await phase(conns[name], raws[name], stream, per_phase)
                    if name == "gateway":
                        cpu_gw += server.cpu_seconds() - cpu0
                    lat[name] += got
                    secs[name] += took
                    count[name] += len(got)
                    errors[name] += errs
            sql1 = app.sql_counts()
            sql = {k: (sql1.get(k, 0) - sql0.get(k, 0)) / max(1, count["gateway"]) for k in sql1}
            sql = {k: round(v, 2) for k, v in sorted(sql.items()) if v}
            for cs in conns.values():
                for c in cs:
                    c.close()
            kind = "stream_ttft" if stream else "nonstream"
            row = {"concurrency": concurrency, "kind": kind}
            for name in targets:
                row[name] = {
                    "p50_ms": pct(lat[name], 50) * 1000,
                    "p95_ms": pct(lat[name], 95) * 1000,
                    "p99_ms": pct(lat[name], 99) * 1000,
                    "rps": count[name] / secs[name] if secs[name] else 0.0,
                    "n": count[name],
                    "errors": errors[name],
                }
            row["added_ms"] = {p: row["gateway"][f"{p}_ms"] - row["direct"][f"{p}_ms"] for p in ("p50", "p95", "p99")}
            row["daphne_added_ms"] = {
                p: row["daphne"][f"{p}_ms"] - row["direct"][f"{p}_ms"] for p in ("p50", "p95", "p99")
            }
            row["rps_ratio"] = row["gateway"]["rps"] / row["direct"]["rps"] if row["direct"]["rps"] else 0.0
            row["server_cpu_ms_per_request"] = cpu_gw / max(1, count["gateway"]) * 1000
            row["sql_per_request"] = sql
            results[f"{kind}@{concurrency}"] = row
            d, f, g, a = row["direct"], row["daphne"], row["gateway"], row["added_ms"]
            print(
                f"c={concurrency:<3} {kind:<11} direct p50/p95/p99 {d['p50_ms']:6.2f}/{d['p95_ms']:6.2f}/{d['p99_ms']:6.2f} ms"
                f" {d['rps']:7.0f} rps | Daphne alone p50 {f['p50_ms']:6.2f} ms {f['rps']:6.0f} rps"
                f" | gateway {g['p50_ms']:6.2f}/{g['p95_ms']:6.2f}/{g['p99_ms']:6.2f} ms"
                f" {g['rps']:6.0f} rps | added {a['p50']:6.2f}/{a['p95']:6.2f}/{a['p99']:6.2f} ms"
                f" (Daphne alone {row['daphne_added_ms']['p50']:.2f})"
                f" | rps ratio {row['rps_ratio']:.2f} | server CPU {row['server_cpu_ms_per_request']:.2f} ms/req"
                f" | errors {errors['direct']}/{errors['daphne']}/{errors['gateway']} | SQL/req {sql}",
                flush=True,
            )
    return results


def sdk_check(app: Chatweb, key: str, model: str) -> None:
    """One request of each kind through the official SDK, so the figures are for a path the SDK uses."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content, reply
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
        if c.choices
    ]
    assert "".join(pieces), pieces
    print(f"openai SDK check through chatweb: ok ({len(pieces)} stream chunks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (under a minute)")
    parser.add_argument("--smoke", action="store_true", help="one round of a few requests: that it runs, not figures")
    parser.add_argument("--rounds", type=int, default=4, help="alternations direct/gateway per concurrency")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--profile", help="run the server under py-spy, writing a flame graph (SVG) here")
    parser.add_argument("--only", type=int, help="only this concurrency")
    args = parser.parse_args()
    args.concurrency = [1, 10, 100]
    args.requests = [300, 1000, 2000]  # per phase
    if args.quick:
        args.rounds, args.requests = 2, [100, 300, 500]
    if args.smoke:
        args.rounds, args.requests = 1, [10, 20, 100]
    if args.only:
        i = args.concurrency.index(args.only)
        args.concurrency, args.requests = [args.only], [args.requests[i]]

    with bench_setup(upstream_args=("--tokens", "20"), profile=args.profile) as (app, up_port):
        app.prepare()
        creds = app.user_with_key()
        app.start()
        models = json.loads(
            subprocess.run(
                ["curl", "-s", f"{app.url}/v1/models", "-H", f"Authorization: Bearer {creds['key']}"],
                capture_output=True,
                text=True,
            ).stdout
        )
        model = models["data"][0]["id"]
        sdk_check(app, creds["key"], model)
        print(f"model {model!r}; rounds {args.rounds}; requests per phase {args.requests}", flush=True)
        stats = app.stats()
        rss0 = stats.rss_bytes()
        floor_port = free_port()
        floor = subprocess.Popen(  # served as chatweb is (chatweb/serve.py)
            [PYTHON, "-m", "chatweb.serve", "-b", "127.0.0.1", "-p", str(floor_port), "_floor:application"],
            cwd=BENCH,
            env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(floor_port, floor)
            results = asyncio.run(run(args, up_port, floor_port, app, creds["key"], model))
        finally:
            floor.terminate()
            floor.wait()
        out = {
            "machine": machine(),
            "server_rss_mib": {"start": rss0 / 2**20, "end": stats.rss_bytes() / 2**20},
            "results": results,
        }
        print(f"server RSS {rss0 / 2**20:.0f} MiB at start, {stats.rss_bytes() / 2**20:.0f} MiB at end")
        for kind, label in (("nonstream", "non-streaming"), ("stream_ttft", "to first token")):
            r1, r100 = results.get(f"{kind}@1"), results.get(f"{kind}@100")
            if r1:
                met = "met" if r1["added_ms"]["p50"] <= 1 else "NOT met"
                print(f"TARGET added p50 at c=1 <= 1 ms, {label}: {met} ({r1['added_ms']['p50']:.2f} ms)")
            if r1 and r100:
                ratio = r100["server_cpu_ms_per_request"] / r1["server_cpu_ms_per_request"]
                met = "met" if ratio <= 1.2 else "NOT met"
                print(
                    f"TARGET CPU per call at c=100 <= 1.2 x c=1, {label}: {met} ({r100['server_cpu_ms_per_request']:.2f}"
                    f" vs {r1['server_cpu_ms_per_request']:.2f} ms, {ratio:.2f} x)"
                )
            if r100:
                ratio = r100["gateway"]["rps"] / r100["daphne"]["rps"] if r100["daphne"]["rps"] else 0.0
                met = "met" if ratio >= 0.5 else "NOT met"
                print(
                    f"TARGET rps at c=100 >= 0.5 x Daphne serving nothing, {label}: {met}"
                    f" ({r100['gateway']['rps']:.0f} vs {r100['daphne']['rps']:.0f}, {ratio:.2f} x)"
                )
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

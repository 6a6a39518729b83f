"""Bench 2: live streams per worker.

One Daphne worker (SQLite, in-memory channel layer, watchdog on, the default
STREAM_SAVE_INTERVAL of 1 s). N signed-in websocket clients, one conversation each,
send a message at about the same time (spread over one second); the loopback provider
(bench/_upstream.py, its own process) streams each reply at 20 pieces per second, each
piece stamped with the time it was written, in paragraphs of 10 pieces (so the chat formats
finished blocks as it does for Markdown replies). For each N it prints:

- deltas per second delivered to the clients, and replies completed;
- added per-delta latency p50/p99: the client's receive time minus the provider's
  emit time (same clock: everything runs on this machine); over the whole run (the messages
  sent within a second of each other, so the replies' starts compete with the streams), and
  over the steady state: from the moment the last reply began streaming to the moment the
  first one ended, when all N stream and none starts or ends, with the CPU per piece then;
- the server's CPU (% of one core over the streaming window), its CPU per piece delivered
  (the workers' CPU seconds over the window / pieces the clients received in it), and memory
  per stream ((peak RSS while streaming - RSS before the clients connected) / N);
- database writes per reply (rows written by INSERT, UPDATE and DELETE statements, counted
  by bench/_serve.py, divided by N), next to the target of one per second of
  streaming plus a constant.

and, last, the largest N run whose p99 held 50 ms. The client processes (one asyncio process
per 500 clients, at most two) share this machine's cores with the server and the provider, so at
large N the figures include client-side lag; the clients' own CPU is printed too.

``--workers 2 --database-url ... --redis-url ...`` serves chatweb as compose.yaml does: two
Daphne workers on PostgreSQL and Redis behind nginx with deploy/nginx.conf (nginx's CPU is
printed apart from the workers').

    .venv/bin/python bench/streams.py [--quick | --smoke] [--n 100 500 1000 2000] [--seconds 10] [--json out.json]
        [--workers 2 --database-url postgres://... --redis-url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Chatweb, bench_setup, machine, pct  # noqa: E402

RATE = 20.0
PARAGRAPH = 10  # pieces per paragraph
CONSTANT_WRITES = 8
STAMP = re.compile(r"@(\d+\.\d+)")
DONE = re.compile(
    r'class="message assistant"[^>]*data-status="(complete|error|stopped|interrupted)"|'
    r'data-status="(complete|error|stopped|interrupted)"[^>]*class="message assistant"'
)


def client_process(
    port: int, session: str, conversation_ids: list[int], start_at: float, spread: float, timeout: float, out: mp.Queue
) -> None:
    import websockets

    latencies: list[tuple[float, float]] = []  # (emitted, latency) of each piece
    stats = {
        "deltas": 0,
        "done": 0,
        "failed": 0,
        "statuses": {},
        "connect_errors": 0,
        "last_done": 0.0,
        "first_done": float("inf"),
        "first_pieces": [],
        "reply_seconds": 0.0,
    }

    async def one(index: int, conversation_id: int) -> None:
        uri = f"ws://127.0.0.1:{port}/ws/c/{conversation_id}/"
        try:
            ws = await websockets.connect(
                uri,
                additional_headers={"Cookie": f"sessionid={session}"},
                origin=f"http://127.0.0.1:{port}",
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
                compression=None,
            )
        except Exception as exc:  # noqa: BLE001
            stats["connect_errors"] += 1
            if stats["connect_errors"] <= 3:
                print("connect failed:", repr(exc), file=sys.stderr)
            return
        try:
            await asyncio.sleep(max(0.0, start_at + spread * index / max(1, len(conversation_ids)) - time.time()))
            sent = time.time()
            seen: set[str] = set()
            await ws.send(json.dumps({"message": "Stream me something."}))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    msg = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                now = time.time()
                m = DONE.search(msg)
                if m:
                    status = m.group(1) or m.group(2)
                    stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
                    stats["done"] += 1
                    stats["last_done"] = max(stats["last_done"], now)
                    stats["first_done"] = min(stats["first_done"], now)
                    stats["reply_seconds"] += now - sent
                    return
                for stamp in STAMP.findall(msg):  # a piece counts when it first shows (formatted blocks repeat it)
                    if stamp not in seen:
                        if not seen:
                            stats["first_pieces"].append(float(stamp))
                        seen.add(stamp)
                        latencies.append((float(stamp), now - float(stamp)))
                        stats["deltas"] += 1
            stats["failed"] += 1
        except Exception as exc:  # noqa: BLE001
            stats["failed"] += 1
            if stats["failed"] <= 3:
                print("client failed:", repr(exc), file=sys.stderr)
        finally:
            await ws.close()

    async def main() -> None:
        # connect in batches so the listen backlog is not overrun
        tasks = []
        for i, cid in enumerate(conversation_ids):
            tasks.append(asyncio.create_task(one(i, cid)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu_s"] = usage.ru_utime + usage.ru_stime
    out.put((latencies, stats))


def record(pid: int, profile: str, n: int, start_at: float, seconds: float) -> None:
    """py-spy on the server from ``start_at`` for ``seconds``: the messages sent and their replies streaming."""
    time.sleep(max(0.0, start_at - time.time()))
    stem, _, kind = profile.rpartition(".")
    raw = ["--format", "raw"] if kind == "txt" else []
    subprocess.run(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "-r",
            "200",
            "--gil",
            *raw,
            "--pid",
            str(pid),
            "--duration",
            str(math.ceil(seconds)),
            "-o",
            f"{stem}-{n}.{kind}",
        ],
        check=False,
        capture_output=True,
    )


def create_conversations(app: Chatweb, n: int) -> list[int]:
    code = f"""
import json
from django.contrib.auth import get_user_model
from conversations.models import ChatModel, Conversation
user = get_user_model().objects.get(username="bench")
model = ChatModel.objects.filter(enabled=True).order_by("position").first()
made = Conversation.objects.bulk_create([Conversation(user=user, model=model, title="bench") for _ in range({n})])
ids = [c.pk for c in made] if made and made[0].pk else list(Conversation.objects.filter(user=user).order_by("-id").values_list("id", flat=True)[:{n}])
print(json.dumps(ids))
"""
    return app.shell(code)


def run_n(app: Chatweb, session: str, n: int, seconds: float, profile: str | None = None) -> dict:
    ids = create_conversations(app, n)
    app.start()
    servers = app.all_stats()[: app.workers]
    proxy = app.all_stats()[app.workers :]
    time.sleep(1.0)
    rss_before = sum(server.rss_bytes() for server in servers)
    sql0 = app.sql_counts()
    procs_n = 1 if n <= 500 else 2
    connect_time = max(5.0, n / 150)
    start_at = time.time() + connect_time
    spread = 1.0
    timeout = connect_time + seconds + 60
    queue: mp.Queue = mp.Queue()
    chunks = [ids[i::procs_n] for i in range(procs_n)]
    procs = [
        mp.Process(target=client_process, args=(app.port, session, chunk, start_at, spread, timeout, queue))
        for chunk in chunks
    ]
    for p in procs:
        p.start()
    # sample the server while the clients run
    samples: list[tuple[float, float, int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(
                    (
                        time.time(),
                        sum(server.cpu_seconds() for server in servers),
                        sum(server.rss_bytes() for server in servers),
                        sum(p.cpu_seconds() for p in proxy),
                    )
                )
            except OSError:
                return
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if profile:
        threading.Thread(
            target=record, args=(servers[0].pid, profile, n, start_at, spread + seconds), daemon=True
        ).start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    sampler.join()
    sql1 = app.sql_counts()
    app.stop()

    timed: list[tuple[float, float]] = []
    stats = {"deltas": 0, "done": 0, "failed": 0, "connect_errors": 0, "statuses": {}, "client_cpu_s": 0.0}
    last_done, first_done, first_pieces = 0.0, float("inf"), []
    for lat, st in results:
        timed += lat
        first_done = min(first_done, st["first_done"])
        first_pieces += st["first_pieces"]
        for k in ("deltas", "done", "failed", "connect_errors"):
            stats[k] += st[k]
        stats["client_cpu_s"] += st["cpu_s"]
        stats["reply_seconds"] = stats.get("reply_seconds", 0.0) + st["reply_seconds"]
        for k, v in st["statuses"].items():
            stats["statuses"][k] = stats["statuses"].get(k, 0) + v
        last_done = max(last_done, st["last_done"])
    window = [s for s in samples if start_at <= s[0] <= (last_done or samples[-1][0])]
    if len(window) >= 2:
        seconds_sampled = window[-1][0] - window[0][0]
        cpu_s = window[-1][1] - window[0][1]
        cpu_pct = cpu_s / seconds_sampled * 100
        proxy_pct = (window[-1][3] - window[0][3]) / seconds_sampled * 100
        # pieces received within the sampled window: the whole run's, scaled to the window's share
        pieces = stats["deltas"] * seconds_sampled / max(1e-9, (last_done or window[-1][0]) - start_at)
        cpu_per_piece_us = cpu_s / max(1.0, pieces) * 1e6
    else:
        cpu_pct = proxy_pct = cpu_per_piece_us = float("nan")
    latencies = [latency for _, latency in timed]
    # The steady state: from when the last reply began streaming to when the first one ended, all N stream.
    all_streaming = max(first_pieces, default=float("inf"))
    steady = [latency for emitted, latency in timed if all_streaming <= emitted <= first_done]
    steady_samples = [s for s in samples if all_streaming <= s[0] <= first_done]
    if len(steady_samples) >= 2 and steady:
        steady_secs = steady_samples[-1][0] - steady_samples[0][0]
        steady_pieces = sum(1 for emitted, _ in timed if steady_samples[0][0] <= emitted <= steady_samples[-1][0])
        steady_cpu_us = (steady_samples[-1][1] - steady_samples[0][1]) / max(1, steady_pieces) * 1e6
        steady_cpu_pct = (steady_samples[-1][1] - steady_samples[0][1]) / steady_secs * 100
    else:
        steady_secs = steady_cpu_us = steady_cpu_pct = float("nan")
    peak = max((s[2] for s in samples), default=rss_before)
    stream_secs = (last_done - start_at) if last_done else float("nan")
    writes = sum(sql1.get(f"{k} rows", 0) - sql0.get(f"{k} rows", 0) for k in ("INSERT", "UPDATE", "DELETE"))
    write_statements = sum(sql1.get(k, 0) - sql0.get(k, 0) for k in ("INSERT", "UPDATE", "DELETE"))
    statements = sum(sql1.values()) - sum(sql0.values())
    expected_tokens = int(seconds * RATE)
    row = {
        "n": n,
        "replies_done": stats["done"],
        "statuses": stats["statuses"],
        "failed": stats["failed"],
        "connect_errors": stats["connect_errors"],
        "deltas": stats["deltas"],
        "deltas_expected": n * expected_tokens,
        "deltas_per_s": stats["deltas"] / stream_secs if stream_secs == stream_secs else 0,
        "window_s": stream_secs,
        "added_latency_ms": {
            "p50": pct(latencies, 50) * 1000,
            "p90": pct(latencies, 90) * 1000,
            "p99": pct(latencies, 99) * 1000,
            "max": max(latencies, default=float("nan")) * 1000,
        },
        "steady": {
            "seconds": steady_secs,
            "p50_ms": pct(steady, 50) * 1000,
            "p99_ms": pct(steady, 99) * 1000,
            "cpu_pct": steady_cpu_pct,
            "cpu_per_piece_us": steady_cpu_us,
        },
        "server_cpu_pct": cpu_pct,
        "server_cpu_per_piece_us": cpu_per_piece_us,
        "proxy_cpu_pct": proxy_pct,
        "server_rss_mib": {"before": rss_before / 2**20, "peak": peak / 2**20},
        "memory_per_stream_kib": (peak - rss_before) / n / 1024,
        "writes_per_reply": writes / n,
        "mean_reply_s": stats.get("reply_seconds", 0.0) / max(1, stats["done"]),
        "write_statements_per_reply": write_statements / n,
        "writes_by_kind_per_reply": {
            k: round((sql1.get(f"{k} rows", 0) - sql0.get(f"{k} rows", 0)) / n, 2)
            for k in ("INSERT", "UPDATE", "DELETE")
        },
        "statements_per_reply": statements / n,
        "client_cpu_pct": stats["client_cpu_s"] / (stream_secs + connect_time) * 100
        if stream_secs == stream_secs
        else 0,
    }
    lat = row["added_latency_ms"]
    unconnected = f" ({stats['connect_errors']} could not connect)" if stats["connect_errors"] else ""
    print(
        f"N={n:<5} done {stats['done']}/{n} {stats['statuses']}{unconnected}"
        f" | {stats['deltas']}/{n * expected_tokens} deltas,"
        f" {row['deltas_per_s']:.0f}/s over {stream_secs:.1f}s | added latency p50 {lat['p50']:.1f} ms"
        f" p99 {lat['p99']:.1f} ms max {lat['max']:.0f} ms | server CPU {cpu_pct:.0f}%, {cpu_per_piece_us:.0f} µs/piece"
        f"{f' (nginx {proxy_pct:.0f}%)' if proxy else ''}"
        f" | all {n} streaming ({steady_secs:.1f} s): p50 {pct(steady, 50) * 1000:.1f} ms p99 {pct(steady, 99) * 1000:.1f} ms,"
        f" server CPU {steady_cpu_pct:.0f}%, {steady_cpu_us:.0f} µs/piece"
        f" | RSS {rss_before / 2**20:.0f}->{peak / 2**20:.0f} MiB, {row['memory_per_stream_kib']:.0f} KiB/stream"
        f" | rows written/reply {row['writes_per_reply']:.1f} {row['writes_by_kind_per_reply']}"
        f" in {row['write_statements_per_reply']:.1f} statements"
        f" for replies of {row['mean_reply_s']:.1f} s on average"
        f" (statements/reply {row['statements_per_reply']:.1f}) | clients CPU {row['client_cpu_pct']:.0f}%",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 100 and 300, 5 s replies")
    parser.add_argument("--smoke", action="store_true", help="N = 5, 1 s replies: that it runs, not figures")
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each reply")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--profile",
        help="record the (first) worker with py-spy while messages go and replies stream, into"
        " <PROFILE>-<N>.txt (raw stacks) or .svg (flame graph)",
    )
    parser.add_argument("--workers", type=int, default=1, help="Daphne workers; more than one: behind nginx")
    parser.add_argument("--database-url", help="PostgreSQL instead of SQLite (a database the bench may fill)")
    parser.add_argument("--redis-url", help="the Redis channel layer instead of the in-memory one")
    args = parser.parse_args()
    if args.quick:
        args.n, args.seconds = [100, 300], 5.0
    if args.smoke:
        args.n, args.seconds = [5], 1.0

    tokens = int(args.seconds * RATE)
    rows = []
    upstream_args = ("--tokens", str(tokens), "--rate", str(RATE), "--paragraph", str(PARAGRAPH))
    if args.workers > 1 and not args.redis_url:
        parser.error("several workers share their streams' events through Redis: give --redis-url")
    with bench_setup(
        upstream_args=upstream_args, database_url=args.database_url, redis_url=args.redis_url, workers=args.workers
    ) as (app, _):
        app.prepare()
        creds = app.user_with_key()
        serving = (
            ("one Daphne worker" if args.workers == 1 else f"{args.workers} Daphne workers behind nginx")
            + (", PostgreSQL" if args.database_url else ", SQLite")
            + (", Redis" if args.redis_url else ", in-memory layer")
        )
        print(f"replies of {tokens} pieces at {RATE:.0f}/s ({args.seconds:.0f} s); {serving}", flush=True)
        for n in args.n:
            rows.append(run_n(app, creds["session"], n, args.seconds, args.profile))
        thousand = [r for r in rows if r["n"] == 1000]
        if thousand:
            r = thousand[0]
            ok = r["added_latency_ms"]["p99"] <= 100 and r["replies_done"] == 1000
            print(
                f"TARGET 1,000 streams, all finished, with p99 added latency <= 100 ms: {'met' if ok else 'NOT met'}"
                f" (p99 {r['added_latency_ms']['p99']:.1f} ms, {r['replies_done']} done)"
            )
        held = [r["n"] for r in rows if r["added_latency_ms"]["p99"] <= 50 and r["replies_done"] == r["n"]]
        print(
            f"Largest N run that held p99 <= 50 ms with every reply finished: {max(held) if held else 'none'}"
            f" (of N = {', '.join(str(r['n']) for r in rows)})"
        )
        for r in rows:  # the constant: the turn's inserts (2 messages, stored completion, usage) and final updates
            ok = r["writes_per_reply"] <= r["mean_reply_s"] + CONSTANT_WRITES
            print(
                f"TARGET writes/reply <= 1 per second of streaming + {CONSTANT_WRITES} (N={r['n']}): "
                f"{'met' if ok else 'NOT met'} ({r['writes_per_reply']:.1f} for replies of {r['mean_reply_s']:.1f} s)"
            )
        if args.json:
            Path(args.json).write_text(
                json.dumps({"machine": machine(), "seconds": args.seconds, "rows": rows}, indent=2)
            )


if __name__ == "__main__":
    main()

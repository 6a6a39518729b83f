"""Bench 3: stored completions at scale, on PostgreSQL.

Creates a scratch database (``chatweb_bench`` on 127.0.0.1:5432 as postgres, trust auth,
or ``--pg``; with DATABASE_URL set, its name plus ``_bench`` on that server; ``--sqlite`` for
SQLite), migrates it, and loads StoredCompletion rows with COPY (executemany on SQLite), the
columns taken from the model (``_common.BulkTable``: what the loader does not set takes its
field's default): 90 % are the bench
user's /v1 completions (source "api"), 5 % chat turns, 5 % another user's; 4 model names;
metadata {"team": "t0".."t49", "batch": "<row // 1000>"}; 1 % errors. Rows are loaded in
steps (``--rows``, cumulative); after each step it runs VACUUM ANALYZE on the table (so the
figures are those of a settled table, not of one autovacuum is still working through) and
measures, against one Daphne worker on that database, the server answering (sequential
requests on loopback):

- GET /v1/chat/completions: first page, first page newest first, a deep cursor page
  (``after`` = the id 90 % of the way through the user's rows), with a model filter,
  with a metadata filter (2 % of rows match) and one matching nothing;
- the admin's stored-completions changelist (a superuser's session): unfiltered, by
  model, by status (errors), by metadata key/value, and an id-prefix search.

It prints p50/p95/p99 per page and row count. ``--load-only`` just loads (e.g. the
10^7 rows: ``--rows 10000000 --load-only``, about 10x the 10^6 load time and ~6 GB).
``--keep`` leaves the database for a later ``--reuse``.

    .venv/bin/python bench/database.py [--quick | --smoke] [--rows 100000 1000000] [--pg URL | --sqlite] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Chatweb, bench_database, bench_setup, django_setup, machine, pct  # noqa: E402

MODELS = ["gpt-4o-mini", "gpt-4o", "bench-model", "llama-3-70b"]
TEAMS = 50
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/chatweb_bench"


def pg_admin(pg: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(pg.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


def load(*, start: int, stop: int, user_id: int, other_id: int, key_id: int) -> float:
    """Rows start..stop-1 through Django's connection (COPY on PostgreSQL, executemany on SQLite); returns seconds.

    The columns come from the model (``_common.BulkTable``): the ones not set here take their field's default.
    """
    from _common import BulkTable

    from conversations.models import StoredCompletion

    t0 = time.perf_counter()
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    table = BulkTable(
        StoredCompletion,
        [
            "id",
            "user",
            "api_key",
            "model",
            "provider",
            "upstream_model",
            "request",
            "messages",
            "response",
            "metadata",
            "prompt_tokens",
            "completion_tokens",
            "status",
            "latency_ms",
            "source",
            "created_at",
        ],
    )

    def rows():
        for i in range(start, stop):
            cid = f"chatcmpl-{i:024x}"
            bucket = i % 20
            source = "chat" if bucket == 0 else "api"
            owner = other_id if bucket == 1 else user_id
            model = MODELS[i % len(MODELS)]
            status = "error" if i % 100 == 7 else "completed"
            text = f"Reply number {i}: the quick brown fox jumps over the lazy dog."
            response = (
                f'{{"id": "{cid}", "object": "chat.completion", "created": {1704067200 + i}, "model": "{model}",'
                f' "choices": [{{"index": 0, "message": {{"role": "assistant", "content": "{text}",'
                f' "refusal": null}}, "finish_reason": "stop", "logprobs": null}}],'
                f' "usage": {{"prompt_tokens": 12, "completion_tokens": 17, "total_tokens": 29}}}}'
            )
            messages = f'[{{"role": "user", "content": "Question number {i}, tell me about foxes."}}]'
            metadata = f'{{"team": "t{i % TEAMS}", "batch": "{i // 1000}"}}'
            request = f'{{"model": "{model}", "store": true}}'
            yield (
                cid,
                owner,
                key_id if source == "api" else None,
                model,
                "openai",
                model,
                request,
                messages,
                response,
                metadata,
                12,
                17,
                status,
                100 + i % 900,
                source,
                base + timedelta(seconds=i),
            )

    table.load(rows())
    return time.perf_counter() - t0


def vacuum_analyze() -> float:
    """VACUUM ANALYZE the table (outside a transaction, as VACUUM must be; ANALYZE on SQLite); returns seconds.

    Right after a COPY the table's pages are not yet marked all-visible, its statistics are stale
    and autovacuum is about to work through it while the pages are measured. Vacuuming first
    measures the settled table a running server would have.
    """
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("VACUUM ANALYZE conversations_storedcompletion")
        else:
            cur.execute("ANALYZE conversations_storedcompletion")
    return time.perf_counter() - t0


def anchor_id(user_id: int, fraction: float) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM conversations_storedcompletion WHERE user_id = %s AND source = 'api'", [user_id]
        )
        n = cur.fetchone()[0]
        cur.execute(
            "SELECT id FROM conversations_storedcompletion WHERE user_id = %s AND source = 'api'"
            " ORDER BY created_at, id LIMIT 1 OFFSET %s",
            [user_id, int(n * fraction)],
        )
        return cur.fetchone()[0]


def timed_get(client, url: str, repeat: int) -> tuple[list[float], int, int]:  # noqa: ANN001
    times = []
    status = size = 0
    client.get(url)  # warm
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append(time.perf_counter() - t0)
        status, size = r.status_code, len(r.content)
    return times, status, size


def measure(app: Chatweb, creds: dict, rows: int, repeat: int, admin_repeat: int) -> dict:
    import httpx

    deep = anchor_id(creds["user_id"], 0.9)
    api = {
        "first page": "/v1/chat/completions?limit=20",
        "first page, newest first": "/v1/chat/completions?limit=20&order=desc",
        "deep cursor page (90%)": f"/v1/chat/completions?limit=20&after={deep}",
        "model filter": "/v1/chat/completions?limit=20&model=gpt-4o",
        "metadata filter (2% match)": "/v1/chat/completions?limit=20&" + urllib.parse.quote("metadata[team]") + "=t7",
        "metadata filter, no match": "/v1/chat/completions?limit=20&" + urllib.parse.quote("metadata[team]") + "=none",
    }
    admin = {
        "admin changelist": "/admin/conversations/storedcompletion/",
        "admin, model filter": "/admin/conversations/storedcompletion/?model=gpt-4o",
        "admin, status=error": "/admin/conversations/storedcompletion/?status__exact=error",
        "admin, metadata filter": "/admin/conversations/storedcompletion/?meta_key=team&meta_value=t7",
        "admin, id search": "/admin/conversations/storedcompletion/?q=chatcmpl-0000000000000000000a",
        "admin, page 100": "/admin/conversations/storedcompletion/?p=100",
    }
    out: dict = {"rows": rows}
    with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {creds['key']}"}, timeout=120) as c:
        for name, url in api.items():
            times, status, size = timed_get(c, url, repeat)
            out[name] = {
                "p50_ms": pct(times, 50) * 1000,
                "p95_ms": pct(times, 95) * 1000,
                "p99_ms": pct(times, 99) * 1000,
                "status": status,
                "bytes": size,
            }
    with httpx.Client(base_url=app.url, cookies={"sessionid": creds["session"]}, timeout=120) as c:
        for name, url in admin.items():
            times, status, size = timed_get(c, url, admin_repeat)
            out[name] = {
                "p50_ms": pct(times, 50) * 1000,
                "p95_ms": pct(times, 95) * 1000,
                "p99_ms": pct(times, 99) * 1000,
                "status": status,
                "bytes": size,
            }
    for name, v in out.items():
        if name != "rows":
            print(
                f"  rows={rows:>9,} {name:<28} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms"
                f"  p99 {v['p99_ms']:7.1f} ms  (HTTP {v['status']}, {v['bytes']:,} bytes)",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 then 100,000 rows, fewer requests")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="200 then 1,000 rows, a few requests, on SQLite unless DATABASE_URL is set: that it runs, not figures",
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="cumulative row counts")
    parser.add_argument(
        "--pg",
        help=f"the scratch database (default {DEFAULT_PG}; with DATABASE_URL set, its name plus _bench on its server)",
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--reuse", action="store_true", help="keep the rows already in the database (PostgreSQL)")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end (PostgreSQL)")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=200, help="requests per API page")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    admin_repeat = 20
    if args.quick:
        args.rows, args.repeat, admin_repeat = [20_000, 100_000], 50, 5
    if args.smoke:
        args.rows, args.repeat, admin_repeat = [200, 1_000], 5, 2
    dsn = bench_database(args.pg, sqlite=args.sqlite, smoke=args.smoke, default_pg=DEFAULT_PG, suffix="_bench")
    dbname = dsn.rsplit("/", 1)[1] if dsn else None
    if dsn and not args.reuse:
        pg_admin(dsn, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        pg_admin(dsn, f'CREATE DATABASE "{dbname}"')
    print(f"database: {'PostgreSQL ' + dbname if dsn else 'SQLite'}", flush=True)

    results = []
    with bench_setup(database_url=dsn) as (app, _):
        app.prepare()
        creds = app.user_with_key(superuser=True)
        other = app.user_with_key(username="other")
        django_setup(app.env())  # the loader's models and connection: the server's database
        from django.db import connection, connections

        from conversations.models import ApiKey, StoredCompletion

        key_id = ApiKey.objects.filter(user_id=creds["user_id"]).latest("id").pk
        have = StoredCompletion.objects.count()
        for target in args.rows:
            if target > have:
                secs = load(start=have, stop=target, user_id=creds["user_id"], other_id=other["user_id"], key_id=key_id)
                print(
                    f"loaded rows {have:,}..{target:,} in {secs:.1f} s ({(target - have) / secs:,.0f} rows/s)",
                    flush=True,
                )
                have = target
            secs = vacuum_analyze()
            print(
                f"{'VACUUM ' if connection.vendor == 'postgresql' else ''}ANALYZE conversations_storedcompletion"
                f" ({have:,} rows) in {secs:.1f} s",
                flush=True,
            )
            if args.load_only:
                continue
            app.start()
            try:
                results.append(measure(app, creds, have, args.repeat, admin_repeat))
            finally:
                app.stop()
        connections.close_all()
        if results:
            last = results[-1]
            api_names = [k for k in last if k != "rows" and not k.startswith("admin")]
            worst = max(api_names, key=lambda k: last[k]["p99_ms"])
            ok = last[worst]["p99_ms"] < 20
            print(
                f"TARGET API pages p99 < 20 ms at {last['rows']:,} rows: {'met' if ok else 'NOT met'}"
                f" (worst: {worst}, p99 {last[worst]['p99_ms']:.1f} ms)"
            )
            if len(results) > 1:
                first = results[0]
                growth = {k: last[k]["p50_ms"] / first[k]["p50_ms"] for k in api_names}
                flat = max(growth.values()) < 1.5
                print(
                    f"TARGET API pages flat as rows grow ({first['rows']:,} -> {last['rows']:,}): "
                    f"{'met' if flat else 'NOT met'} (p50 ratios: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in growth.items())
                    + ")"
                )
            admin_names = [k for k in last if k.startswith("admin")]
            worst = max(admin_names, key=lambda k: last[k]["p95_ms"])
            ok = last[worst]["p95_ms"] < 300
            print(
                f"TARGET admin pages < 300 ms (p95) at {last['rows']:,} rows: {'met' if ok else 'NOT met'}"
                f" (worst: {worst}, p95 {last[worst]['p95_ms']:.1f} ms)"
            )
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
        if dsn and not args.keep:
            try:
                pg_admin(dsn, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001
                print("could not drop the bench database:", exc, file=sys.stderr)


if __name__ == "__main__":
    main()

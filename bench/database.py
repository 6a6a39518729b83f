"""Bench 3: stored completions at scale, on PostgreSQL.

Creates a scratch database (``chatweb_bench`` on 127.0.0.1:5432 as postgres, trust auth,
or ``--pg``), migrates it, and loads StoredCompletion rows with COPY: 90 % are the bench
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

    .venv/bin/python bench/database.py [--quick] [--rows 100000 1000000] [--json out.json]
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
from _common import Chatweb, bench_setup, machine, pct  # noqa: E402

MODELS = ["gpt-4o-mini", "gpt-4o", "bench-model", "llama-3-70b"]
TEAMS = 50
NULL = "\\N"  # COPY text format


def pg_admin(pg: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(pg.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


def load(dsn: str, *, start: int, stop: int, user_id: int, other_id: int, key_id: int) -> float:
    """COPY rows start..stop-1; returns seconds taken."""
    import psycopg

    t0 = time.perf_counter()
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    columns = (
        "id, user_id, api_key_id, model, provider, upstream_model, request, messages, response, metadata,"
        " prompt_tokens, completion_tokens, status, latency_ms, source, created_at"
    )
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'conversations_storedcompletion'"
                " AND is_nullable = 'NO' AND column_default IS NULL"
            )
            required = {r[0] for r in cur.fetchall()} - {c.strip() for c in columns.split(",")}
            if required:
                raise RuntimeError(f"StoredCompletion has new required columns this loader does not fill: {required}")
            with cur.copy(f"COPY conversations_storedcompletion ({columns}) FROM STDIN") as copy:
                batch: list[str] = []
                for i in range(start, stop):
                    cid = f"chatcmpl-{i:024x}"
                    bucket = i % 20
                    source = "chat" if bucket == 0 else "api"
                    owner = other_id if bucket == 1 else user_id
                    model = MODELS[i % len(MODELS)]
                    status = "error" if i % 100 == 7 else "completed"
                    created = (base + timedelta(seconds=i)).isoformat()
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
                    batch.append(
                        f"{cid}\t{owner}\t{key_id if source == 'api' else NULL}\t{model}\topenai\t{model}\t{request}\t"
                        f"{messages}\t{response}\t{metadata}\t12\t17\t{status}\t{100 + i % 900}\t{source}\t{created}\n"
                    )
                    if len(batch) >= 20000:
                        copy.write("".join(batch))
                        batch.clear()
                if batch:
                    copy.write("".join(batch))
        conn.commit()
    return time.perf_counter() - t0


def vacuum_analyze(dsn: str) -> float:
    """VACUUM ANALYZE the table (outside a transaction, as VACUUM must be); returns seconds taken.

    Right after a COPY the table's pages are not yet marked all-visible, its statistics are stale
    and autovacuum is about to work through it while the pages are measured. Vacuuming first
    measures the settled table a running server would have.
    """
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE conversations_storedcompletion")
    return time.perf_counter() - t0


def anchor_id(dsn: str, user_id: int, fraction: float) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        n = conn.execute(
            "SELECT count(*) FROM conversations_storedcompletion WHERE user_id = %s AND source = 'api'", [user_id]
        ).fetchone()[0]
        return conn.execute(
            "SELECT id FROM conversations_storedcompletion WHERE user_id = %s AND source = 'api'"
            " ORDER BY created_at, id OFFSET %s LIMIT 1",
            [user_id, int(n * fraction)],
        ).fetchone()[0]


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


def measure(app: Chatweb, creds: dict, dsn: str, rows: int, repeat: int, admin_repeat: int) -> dict:
    import httpx

    deep = anchor_id(dsn, creds["user_id"], 0.9)
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
            out[name] = {"p50_ms": pct(times, 50) * 1000, "p95_ms": pct(times, 95) * 1000,
                         "p99_ms": pct(times, 99) * 1000, "status": status, "bytes": size}
    with httpx.Client(base_url=app.url, cookies={"sessionid": creds["session"]}, timeout=120) as c:
        for name, url in admin.items():
            times, status, size = timed_get(c, url, admin_repeat)
            out[name] = {"p50_ms": pct(times, 50) * 1000, "p95_ms": pct(times, 95) * 1000,
                         "p99_ms": pct(times, 99) * 1000, "status": status, "bytes": size}
    for name, v in out.items():
        if name != "rows":
            print(f"  rows={rows:>9,} {name:<28} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms"
                  f"  p99 {v['p99_ms']:7.1f} ms  (HTTP {v['status']}, {v['bytes']:,} bytes)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 then 100,000 rows, fewer requests")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="cumulative row counts")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/chatweb_bench")
    parser.add_argument("--reuse", action="store_true", help="keep the rows already in the database")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=200, help="requests per API page")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    admin_repeat = 20
    if args.quick:
        args.rows, args.repeat, admin_repeat = [20_000, 100_000], 50, 5
    dsn = args.pg
    dbname = dsn.rsplit("/", 1)[1]
    if not args.reuse:
        pg_admin(dsn, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        pg_admin(dsn, f'CREATE DATABASE "{dbname}"')

    results = []
    with bench_setup(database_url=dsn) as (app, _):
        app.prepare()
        creds = app.user_with_key(superuser=True)
        other = app.user_with_key(username="other")
        key_id = app.shell(
            "import json; from conversations.models import ApiKey; "
            f"print(json.dumps(ApiKey.objects.filter(user_id={creds['user_id']}).latest('id').pk))"
        )
        import psycopg

        with psycopg.connect(dsn) as conn:
            have = conn.execute("SELECT count(*) FROM conversations_storedcompletion").fetchone()[0]
        for target in args.rows:
            if target > have:
                secs = load(dsn, start=have, stop=target, user_id=creds["user_id"], other_id=other["user_id"],
                            key_id=key_id)
                print(f"loaded rows {have:,}..{target:,} in {secs:.1f} s ({(target - have) / secs:,.0f} rows/s)",
                      flush=True)
                have = target
            secs = vacuum_analyze(dsn)
            print(f"VACUUM ANALYZE conversations_storedcompletion ({have:,} rows) in {secs:.1f} s", flush=True)
            if args.load_only:
                continue
            app.start()
            try:
                results.append(measure(app, creds, dsn, have, args.repeat, admin_repeat))
            finally:
                app.stop()
        if results:
            last = results[-1]
            api_names = [k for k in last if k != "rows" and not k.startswith("admin")]
            worst = max(api_names, key=lambda k: last[k]["p99_ms"])
            ok = last[worst]["p99_ms"] < 20
            print(f"TARGET API pages p99 < 20 ms at {last['rows']:,} rows: {'met' if ok else 'NOT met'}"
                  f" (worst: {worst}, p99 {last[worst]['p99_ms']:.1f} ms)")
            if len(results) > 1:
                first = results[0]
                growth = {k: last[k]["p50_ms"] / first[k]["p50_ms"] for k in api_names}
                flat = max(growth.values()) < 1.5
                print(f"TARGET API pages flat as rows grow ({first['rows']:,} -> {last['rows']:,}): "
                      f"{'met' if flat else 'NOT met'} (p50 ratios: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in growth.items()) + ")")
            admin_names = [k for k in last if k.startswith("admin")]
            worst = max(admin_names, key=lambda k: last[k]["p95_ms"])
            ok = last[worst]["p95_ms"] < 300
            print(f"TARGET admin pages < 300 ms (p95) at {last['rows']:,} rows: {'met' if ok else 'NOT met'}"
                  f" (worst: {worst}, p95 {last[worst]['p95_ms']:.1f} ms)")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
        if not args.keep:
            try:
                pg_admin(dsn, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001
                print("could not drop the bench database:", exc, file=sys.stderr)


if __name__ == "__main__":
    main()

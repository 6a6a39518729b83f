"""Bench: search at scale on PostgreSQL (conversations.library.search.conversation_search).

Creates a scratch database (``chatweb_bench_search`` on 127.0.0.1:5432 as postgres, trust auth,
or ``--pg``; with DATABASE_URL set, its name plus ``_bench_search`` on that server; ``--sqlite``
for SQLite's FTS5), migrates it, and loads one user's ``--conversations`` conversations holding
``--messages`` messages in all with COPY (executemany on SQLite), the columns taken from the
models (``_common.BulkTable``); the search index is dropped during the load and built after,
then VACUUM ANALYZE. Message text is 20 to 60 words drawn from a 20,000-word synthetic
vocabulary with Zipf frequencies (seeded, so every run loads the same text); 0.2 % of messages
also carry the sentence "quarterly revenue forecast".

It then calls the search service in-process, the way the search view does (first page: title
hits and 20 messages, snippets built), ``--runs`` times per query after a warm-up, and prints
p50/p95/p99 with the number of messages each query matches:

- a word (a vocabulary word of rank 2,000: about 0.2 % of messages);
- a phrase ("quarterly revenue forecast");
- a prefix being typed (three letters that begin a few dozen vocabulary words);
- a very common word (rank 5: about a quarter of all messages), and the word with a filter.

    .venv/bin/python bench/search.py [--quick | --smoke] [--messages 1000000] [--conversations 10000] [--runs 200]
                                     [--pg URL | --sqlite] [--keep] [--reuse] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_database, django_setup, machine, pct  # noqa: E402

VOCABULARY = 20_000
SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
PHRASE = "quarterly revenue forecast"
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/chatweb_bench_search"


def vocabulary(rng: random.Random) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def pg_admin(pg: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(pg.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


def load(*, messages: int, conversations: int, words: list[str], rng: random.Random) -> dict[str, float]:
    """The user, their conversations and messages, through Django's connection; returns the seconds each step took.

    The columns come from the models (``BulkTable``): what this loader does not set takes its field's default.
    The messages' search index is dropped during the load and built after (PostgreSQL's GIN index; SQLite's
    FTS5 insert trigger, the table rebuilt), as ``searchindex_ensure`` builds whatever is missing.
    """
    from _common import BulkTable
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection

    from conversations.library.searchindex import fts_table, searchindex_ensure
    from conversations.models import Conversation, Message

    timings = {}
    weights = [1 / (rank + 1) for rank in range(len(words))]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    per = messages // conversations
    user_id = get_user_model().objects.create(username="bench", password="!").pk
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("DROP INDEX IF EXISTS conversations_message_search")
        else:
            cur.execute(f"DROP TRIGGER IF EXISTS {fts_table('conversations_message')}_insert")
    t0 = time.perf_counter()

    def conversation_rows():
        for c in range(1, conversations + 1):
            at = base + timedelta(minutes=c * per)
            title = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(2, 6)))
            yield c, user_id, title, c % 50 == 0, at, at

    def message_rows():
        for m in range(messages):
            c = m // per + 1
            at = base + timedelta(minutes=(c - 1) * per + m % per)
            text = rng.choices(words, cum_weights=cumulative, k=rng.randint(20, 60))
            if rng.random() < 0.002:
                text.insert(rng.randint(0, len(text)), PHRASE)
            yield m + 1, c, "user" if m % 2 == 0 else "assistant", " ".join(text), at, at

    BulkTable(Conversation, ["id", "user", "title", "pinned", "created_at", "updated_at"]).load(conversation_rows())
    BulkTable(Message, ["id", "conversation", "role", "content", "created_at", "updated_at"]).load(message_rows())
    timings["copy_s" if connection.vendor == "postgresql" else "insert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SET maintenance_work_mem = '256MB'")
        searchindex_ensure(connection=connection)
        for sql in connection.ops.sequence_reset_sql(no_style(), [Conversation, Message]):
            cur.execute(sql)
    timings["index_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("VACUUM ANALYZE conversations_message")
            cur.execute("VACUUM ANALYZE conversations_conversation")
        else:
            cur.execute("ANALYZE")
    timings["vacuum_s" if connection.vendor == "postgresql" else "analyze_s"] = time.perf_counter() - t0
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pg",
        help=f"the scratch database (default {DEFAULT_PG}; with DATABASE_URL set,"
        " its name plus _bench_search on its server)",
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite (FTS5) instead of PostgreSQL")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10^5 messages over 10^3 conversations, 50 runs")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2,000 messages, 5 runs, on SQLite unless DATABASE_URL is set: that it runs, not figures",
    )
    parser.add_argument("--keep", action="store_true", help="leave the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.conversations, args.runs = 100_000, 1_000, 50
    if args.smoke:
        args.messages, args.conversations, args.runs = 2_000, 20, 5

    rng = random.Random(15)
    words = vocabulary(rng)
    dsn = bench_database(args.pg, sqlite=args.sqlite, smoke=args.smoke, default_pg=DEFAULT_PG, suffix="_bench_search")
    # SQLite's database is a file in the data directory: a fixed one when it is kept for --reuse.
    kept = Path(tempfile.gettempdir()) / "chatweb-bench-search"
    data_dir = kept if dsn is None and (args.keep or args.reuse) else Path(tempfile.mkdtemp(prefix="bench-search-"))
    if dsn is None and not args.reuse:
        shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    info: dict = {
        "machine": machine(),
        "database": "postgresql" if dsn else "sqlite",
        "messages": args.messages,
        "conversations": args.conversations,
    }
    if dsn and not args.reuse:
        name = dsn.rsplit("/", 1)[1]
        pg_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg_admin(dsn, f'CREATE DATABASE "{name}"')
    django_setup(
        {
            "DJANGO_SETTINGS_MODULE": "chatweb.settings",
            "CHATWEB_DATA_DIR": str(data_dir),
            "LOCAL_MODEL": "0",
            "LOG_LEVEL": "WARNING",
            **({"DATABASE_URL": dsn} if dsn else {}),
        }
    )
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from conversations.library import search

    if not args.reuse:
        call_command("migrate", verbosity=0)
        print(
            f"loading {args.messages:,} messages over {args.conversations:,} conversations ({info['database']})…",
            flush=True,
        )
        info["load"] = load(messages=args.messages, conversations=args.conversations, words=words, rng=rng)
        print("  " + ", ".join(f"{k} {v:.1f}" for k, v in info["load"].items()), flush=True)

    user = get_user_model().objects.get(username="bench")
    prefix = next(w[:3] for w in words[100:] if 10 <= sum(v.startswith(w[:3]) for v in words) <= 60)
    queries = {
        "word": words[2000] + " ",
        "phrase": f'"{PHRASE}"',
        "prefix": prefix,
        "common word": words[5] + " ",
        "word + pinned:yes": words[2000] + " pinned:yes",
    }
    results = {}
    print(f"{'query':<20} {'text':<34} {'matches':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for label, text in queries.items():
        parsed = search.search_query_parse(text)
        matches = search._message_matches(user=user, query=parsed).count()
        for _ in range(5):
            search.conversation_search(user=user, query=parsed)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            page = search.conversation_search(user=user, query=parsed)
            times.append(time.perf_counter() - t0)
        row = {
            "text": text,
            "matches": matches,
            "hits": len(page.hits),
            **{f"p{p}_ms": pct(times, p) * 1000 for p in (50, 95, 99)},
        }
        results[label] = row
        print(
            f"{label:<20} {text!r:<34} {matches:>9,} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['p99_ms']:>8.1f}"
        )
    for label in ("word", "phrase", "prefix"):
        met = results[label]["p99_ms"] <= 50
        print(
            f"TARGET search p99 <= 50 ms for a {label}: {'met' if met else 'NOT met'} ({results[label]['p99_ms']:.1f} ms)"
        )
    info["results"] = results
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2, default=str))
    from django.db import connections

    connections.close_all()
    if dsn and not args.keep:
        pg_admin(dsn, f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    if data_dir != kept:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

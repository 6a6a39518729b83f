"""Bench: search at scale on PostgreSQL (services.search.conversation_search).

Creates a scratch database (``chatweb_bench_search`` on 127.0.0.1:5432 as postgres, trust auth,
or ``--pg``), migrates it, and loads one user's ``--conversations`` conversations holding
``--messages`` messages in all with COPY (the GIN index is dropped during the load and built
after, then VACUUM ANALYZE). Message text is 20 to 60 words drawn from a 20,000-word synthetic
vocabulary with Zipf frequencies (seeded, so every run loads the same text); 0.2 % of messages
also carry the sentence "quarterly revenue forecast".

It then calls the search service in-process, the way the search view does (first page: title
hits and 20 messages, snippets built), ``--runs`` times per query after a warm-up, and prints
p50/p95/p99 with the number of messages each query matches:

- a word (a vocabulary word of rank 2,000: about 0.2 % of messages);
- a phrase ("quarterly revenue forecast");
- a prefix being typed (three letters that begin a few dozen vocabulary words);
- a very common word (rank 5: about a quarter of all messages), and the word with a filter.

    .venv/bin/python bench/search.py [--quick] [--messages 1000000] [--conversations 10000] [--runs 200]
                                     [--pg URL] [--keep] [--reuse] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, machine, pct  # noqa: E402

VOCABULARY = 20_000
SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
PHRASE = "quarterly revenue forecast"


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


def load(dsn: str, *, messages: int, conversations: int, words: list[str], rng: random.Random) -> dict[str, float]:
    """The user, their conversations and messages; returns the seconds each step took."""
    import psycopg

    timings = {}
    weights = [1 / (rank + 1) for rank in range(len(words))]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    per = messages // conversations
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined) VALUES ('!', false, 'bench', '', '', '', false, true, now()) RETURNING id"
        )
        user_id = cur.fetchone()[0]
        cur.execute("DROP INDEX IF EXISTS conversations_message_search")
        t0 = time.perf_counter()
        with cur.copy(
            "COPY conversations_conversation (id, user_id, title, pinned, archived, imported_from, import_key,"
            " created_at, updated_at) FROM STDIN"
        ) as copy:
            for c in range(1, conversations + 1):
                at = base + timedelta(minutes=c * per)
                title = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(2, 6)))
                copy.write(f"{c}\t{user_id}\t{title}\t{'t' if c % 50 == 0 else 'f'}\tf\t\t\t{at}\t{at}\n")
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'conversations_message'"
            " AND is_nullable = 'NO' AND column_default IS NULL AND is_generated = 'NEVER'"
        )
        columns = ["id", "conversation_id", "role", "content", "content_html", "status", "error", "finish_reason",
                   "model_name", "upstream_model", "usage_estimated", "imported", "created_at", "updated_at"]
        fixed: dict[str, str] = {}
        extra = [c[0] for c in cur.fetchall() if c[0] not in columns]
        unknown = set(extra) - set(fixed)
        if unknown:
            raise RuntimeError(f"Message has new required columns this loader does not fill: {unknown}")
        tail = "".join("\t" + fixed[c] for c in extra)
        with cur.copy(f"COPY conversations_message ({', '.join(columns + extra)}) FROM STDIN") as copy:
            batch = []
            for m in range(messages):
                c = m // per + 1
                at = base + timedelta(minutes=(c - 1) * per + m % per)
                text = rng.choices(words, cum_weights=cumulative, k=rng.randint(20, 60))
                if rng.random() < 0.002:
                    text.insert(rng.randint(0, len(text)), PHRASE)
                role = "user" if m % 2 == 0 else "assistant"
                batch.append(
                    f"{m + 1}\t{c}\t{role}\t{' '.join(text)}\t\tcomplete\t\t\t\t\tf\tf\t{at}\t{at}{tail}\n"
                )
                if len(batch) >= 20_000:
                    copy.write("".join(batch))
                    batch.clear()
            copy.write("".join(batch))
        conn.commit()
        timings["copy_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '256MB'")
        cur.execute("CREATE INDEX conversations_message_search ON conversations_message USING gin (search_vector)")
        conn.commit()
        timings["index_s"] = time.perf_counter() - t0
        for table in ("conversations_conversation", "conversations_message"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE conversations_message")
        conn.execute("VACUUM ANALYZE conversations_conversation")
    timings["vacuum_s"] = time.perf_counter() - t0
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/chatweb_bench_search")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10^5 messages over 10^3 conversations, 50 runs")
    parser.add_argument("--keep", action="store_true", help="leave the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.conversations, args.runs = 100_000, 1_000, 50

    rng = random.Random(15)
    words = vocabulary(rng)
    dsn = args.pg
    info: dict = {"machine": machine(), "messages": args.messages, "conversations": args.conversations}
    if not args.reuse:
        name = dsn.rsplit("/", 1)[1]
        pg_admin(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pg_admin(dsn, f"CREATE DATABASE {name}")
        env = {**os.environ, "DATABASE_URL": dsn, "CHATWEB_DATA_DIR": tempfile.mkdtemp(prefix="bench-search-")}
        subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        print(f"loading {args.messages:,} messages over {args.conversations:,} conversations…", flush=True)
        info["load"] = load(dsn, messages=args.messages, conversations=args.conversations, words=words, rng=rng)
        print("  " + ", ".join(f"{k} {v:.1f}" for k, v in info["load"].items()), flush=True)

    os.environ["DATABASE_URL"] = dsn
    os.environ.setdefault("CHATWEB_DATA_DIR", tempfile.mkdtemp(prefix="bench-search-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatweb.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from conversations.library import search

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
        row = {"text": text, "matches": matches, "hits": len(page.hits), **{
            f"p{p}_ms": pct(times, p) * 1000 for p in (50, 95, 99)}}
        results[label] = row
        print(f"{label:<20} {text!r:<34} {matches:>9,} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['p99_ms']:>8.1f}")
    for label in ("word", "phrase", "prefix"):
        met = results[label]["p99_ms"] <= 50
        print(f"TARGET search p99 <= 50 ms for a {label}: {'met' if met else 'NOT met'} ({results[label]['p99_ms']:.1f} ms)")
    info["results"] = results
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2, default=str))
    if not args.keep:
        from django.db import connections

        connections.close_all()
        pg_admin(dsn, f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")


if __name__ == "__main__":
    main()

"""Bench 4: the page of a long conversation.

Creates a conversation of ``--messages`` messages (default 2,000: alternating user
questions and assistant replies written in Markdown with a list, a code block and a
link), then loads its page (/c/<id>/) as its signed-in owner from one Daphne worker
(SQLite by default; ``--pg`` for PostgreSQL) and prints the time to the last byte
(loopback, so server time) p50/p95/max, the bytes sent (and what gzip would make of
them), and the SQL statements one page load runs.

    .venv/bin/python bench/long_conversation.py [--quick] [--messages 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_setup, machine, pct  # noqa: E402

REPLY = """Here is what I found about **item {i}**:

1. The first point, with `inline code` and a [link](https://example.com/{i}).
2. A second point that runs a little longer, to look like a real answer from a model.

```python
def item_{i}(x):
    return x * {i}
```

In short: *it depends*, but usually yes."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 page loads")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--pg", help="a PostgreSQL URL of a scratch database (it is migrated)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--profile", help="run the server under py-spy; raw stacks (.txt) or flame graph (.svg)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 10

    with bench_setup(database_url=args.pg, profile=args.profile) as (app, _):
        app.prepare()
        creds = app.user_with_key()
        conversation_id = app.shell(
            f"""
import json
from django.contrib.auth import get_user_model
from conversations.models import ChatModel, Conversation, Message
user = get_user_model().objects.get(username="bench")
model = ChatModel.objects.filter(enabled=True).order_by("position").first()
c = Conversation.objects.create(user=user, model=model, title="A long conversation")
reply = {REPLY!r}
parent = None
for i in range({args.messages}):
    if i % 2 == 0:
        parent = Message.objects.create(conversation=c, parent=parent, role="user",
                                        content=f"Question {{i}}: tell me about item {{i}}, please.")
    else:
        parent = Message.objects.create(conversation=c, parent=parent, role="assistant", content=reply.format(i=i),
                                        status="complete", model_name=model.name if model else "",
                                        prompt_tokens=20, completion_tokens=80)
Conversation.objects.filter(pk=c.pk).update(current_leaf=parent)
print(json.dumps(c.pk))
"""
        )
        app.start()
        import httpx

        url = f"/c/{conversation_id}/"
        with httpx.Client(base_url=app.url, cookies={"sessionid": creds["session"]}, timeout=120) as client:
            first = client.get(url)
            if first.status_code != 200:
                raise RuntimeError(f"GET {url}: HTTP {first.status_code}")
            body = first.content
            sql0 = app.sql_counts()
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                r = client.get(url)
                r.read()
                times.append(time.perf_counter() - t0)
            sql1 = app.sql_counts()
        shown = body.count(b'class="message ')
        statements = {k: (sql1.get(k, 0) - sql0.get(k, 0)) / args.repeat for k in sql1}
        statements = {k: round(v, 1) for k, v in statements.items() if v}
        encoding = first.headers.get("content-encoding", "none")
        result = {
            "messages": args.messages,
            "database": "postgresql" if args.pg else "sqlite",
            "p50_ms": pct(times, 50) * 1000,
            "p95_ms": pct(times, 95) * 1000,
            "max_ms": max(times) * 1000,
            "bytes": len(body),
            "content_encoding": encoding,
            "gzip_bytes": len(gzip.compress(body)),
            "messages_in_page": shown,
            "sql_per_page": statements,
        }
        print(
            f"conversation of {args.messages} messages ({result['database']}): page p50 {result['p50_ms']:.0f} ms,"
            f" p95 {result['p95_ms']:.0f} ms, max {result['max_ms']:.0f} ms | {len(body):,} bytes sent"
            f" (content-encoding {encoding}; gzip would be {result['gzip_bytes']:,}) |"
            f" ~{shown} message elements in the page | SQL per page load {statements}"
        )
        ok = result["p95_ms"] < 150
        print(f"TARGET 2,000-message page under 150 ms (p95): {'met' if ok else 'NOT met'} ({result['p95_ms']:.0f} ms)")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "result": result}, indent=2))


if __name__ == "__main__":
    main()

"""Bench 4: the page of a long conversation.

Creates a conversation of ``--messages`` messages (default 2,000: alternating user
questions and assistant replies written in Markdown with a list, a code block and a
link), then loads its page (/c/<id>/) as its signed-in owner from one Daphne worker
(SQLite by default; ``--pg`` for PostgreSQL) and prints the time to the last byte
(loopback, so server time) p50/p95/max, the bytes sent (and what gzip would make of
them), and the SQL statements one page load runs.

``--tree``: the messages form ``--branches`` branches (default 200): a trunk of half of them,
and each further branch a new version of one of its questions, answered and followed a few
turns; the page shows the newest branch. Then a tab's websocket switches versions back and
forth (``switch`` actions at forks along the path) and the time from sending a switch to
receiving the new branch's page is printed too (loopback, so server time).

    .venv/bin/python bench/long_conversation.py [--quick | --smoke] [--messages 2000] [--tree] [--json out.json]
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
    parser.add_argument("--smoke", action="store_true", help="100 messages, 3 page loads: that it runs, not figures")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--tree", action="store_true", help="the messages over --branches branches")
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--pg", help="a PostgreSQL URL of a scratch database (it is migrated)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--profile", help="run the server under py-spy; raw stacks (.txt) or flame graph (.svg)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 10
    if args.smoke:
        args.messages, args.branches, args.repeat = 100, 10, 3

    with bench_setup(database_url=args.pg, profile=args.profile) as (app, _):
        app.prepare()
        creds = app.user_with_key()
        conversation_id = app.shell(
            TREE.format(messages=args.messages, branches=args.branches, reply=REPLY)
            if args.tree
            else f"""
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
            forks = app.shell(FORKS.format(conversation_id=conversation_id)) if args.tree else []
        switch_times = _switch_times(app, creds["session"], conversation_id, forks, args.repeat) if forks else []
        shown = body.count(b'class="message ')
        statements = {k: (sql1.get(k, 0) - sql0.get(k, 0)) / args.repeat for k in sql1}
        statements = {k: round(v, 1) for k, v in statements.items() if v}
        encoding = first.headers.get("content-encoding", "none")
        result = {
            "messages": args.messages,
            "branches": args.branches if args.tree else 1,
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
        if switch_times:
            result.update(
                switch_p50_ms=pct(switch_times, 50) * 1000,
                switch_p95_ms=pct(switch_times, 95) * 1000,
                switch_max_ms=max(switch_times) * 1000,
            )
        shape = f"{args.messages} messages over {args.branches} branches" if args.tree else f"{args.messages} messages"
        print(
            f"conversation of {shape} ({result['database']}): page p50 {result['p50_ms']:.0f} ms,"
            f" p95 {result['p95_ms']:.0f} ms, max {result['max_ms']:.0f} ms | {len(body):,} bytes sent"
            f" (content-encoding {encoding}; gzip would be {result['gzip_bytes']:,}) |"
            f" ~{shown} message elements in the page | SQL per page load {statements}"
        )
        ok = result["p95_ms"] < 150
        print(f"TARGET 2,000-message page under 150 ms (p95): {'met' if ok else 'NOT met'} ({result['p95_ms']:.0f} ms)")
        if switch_times:
            ok = result["switch_p95_ms"] < 100
            print(
                f"branch switch (websocket, send to new page received): p50 {result['switch_p50_ms']:.0f} ms,"
                f" p95 {result['switch_p95_ms']:.0f} ms, max {result['switch_max_ms']:.0f} ms over {len(switch_times)}"
                f" switches\nTARGET branch switch under 100 ms (p95): {'met' if ok else 'NOT met'}"
            )
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine(), "result": result}, indent=2))


# A trunk of half the messages, then branches: each a new version of a question on the path so far,
# answered and followed by a few turns, until the messages are all written. The newest branch is current.
TREE = """
import json, random
from django.contrib.auth import get_user_model
from django.db import transaction
from conversations.models import ChatModel, Conversation, Message
from conversations.core.rendering import markdown_render
random.seed(14)
user = get_user_model().objects.get(username="bench")
model = ChatModel.objects.filter(enabled=True).order_by("position").first()
c = Conversation.objects.create(user=user, model=model, title="A branching conversation")
reply = {reply!r}
made = 0

def write(parent, role, i):
    global made
    made += 1
    if role == "user":
        return Message.objects.create(conversation=c, parent=parent, role="user",
                                      content=f"Question {{i}}: tell me about item {{i}}, please.")
    text = reply.format(i=i)  # rendered once, as a finished reply is
    return Message.objects.create(conversation=c, parent=parent, role="assistant", content=text,
                                  content_html=markdown_render(text), status="complete",
                                  model_name=model.name if model else "", prompt_tokens=20, completion_tokens=80)

with transaction.atomic():
    questions, parent = [], None
    for i in range({messages} // 2):
        parent = write(parent, "user" if i % 2 == 0 else "assistant", i)
        if i % 2 == 0:
            questions.append(parent)
    per_branch = max(2, ({messages} - made) // max({branches} - 1, 1))
    while made < {messages}:
        fork = random.choice(questions)
        parent = fork.parent
        for j in range(min(per_branch, {messages} - made)):
            parent = write(parent, "user" if j % 2 == 0 else "assistant", made)
            if j % 2 == 0:
                questions.append(parent)
    Conversation.objects.filter(pk=c.pk).update(current_leaf=parent)
print(json.dumps(c.pk))
"""

# Messages with versions on the current path, each with another version to switch to.
FORKS = """
import json
from conversations.models import Conversation, Message
from conversations.chat.selectors import message_path_ids
c = Conversation.objects.get(pk={conversation_id})
pairs = []
for pk in message_path_ids(conversation=c):
    parent = Message.objects.get(pk=pk).parent_id
    other = Message.objects.filter(conversation=c, parent_id=parent).exclude(pk=pk).values_list("pk", flat=True).first()
    if other:
        pairs.append([pk, other])
print(json.dumps(pairs[-20:]))
"""


def _switch_times(app, session: str, conversation_id: int, forks: list[list[int]], repeat: int) -> list[float]:
    """Seconds from sending each switch to receiving the new branch's page, away and back at each fork."""
    import asyncio

    import websockets

    async def run() -> list[float]:
        url = app.url.replace("http", "ws") + f"/ws/c/{conversation_id}/"
        times: list[float] = []
        async with websockets.connect(
            url, additional_headers={"Cookie": f"sessionid={session}"}, origin=app.url, max_size=None
        ) as socket:
            for round_ in range(max(1, repeat // len(forks) // 2 + 1)):
                for shown, other in forks:
                    for target in (other, shown):
                        t0 = time.perf_counter()
                        await socket.send(json.dumps({"action": "switch", "message_id": str(target)}))
                        while 'id="messages" hx-swap-oob="innerHTML"' not in await socket.recv():
                            pass
                        times.append(time.perf_counter() - t0)
        return times

    return asyncio.run(run())


if __name__ == "__main__":
    main()

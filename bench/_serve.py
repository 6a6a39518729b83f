"""Daphne as chatweb serves it (``python -m chatweb.serve``: on uvloop), plus a counter of the SQL statements the process runs.

Every database connection the process opens gets an execute wrapper that counts
statements by their first word (INSERT, UPDATE, DELETE, SELECT, ...) and, for
writes, the rows they wrote (``"UPDATE rows"``, ...). A daemon
thread writes the totals to ``$BENCH_SQL_COUNTS`` twice a second. The counting
costs a dict increment per statement; the server is otherwise unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COUNTS: Counter[str] = Counter()
_lock = threading.Lock()


def _count(execute, sql, params, many, context):  # noqa: ANN001
    word = sql.lstrip().split(None, 1)[0].upper() if sql else "?"
    result = execute(sql, params, many, context)
    statements = len(params) if many and params is not None and hasattr(params, "__len__") else 1
    rows = context["cursor"].rowcount  # 0 or -1 for SQLite's INSERT ... RETURNING: count its statements
    with _lock:
        COUNTS[word] += statements
        if word in ("UPDATE", "DELETE"):
            COUNTS[f"{word} rows"] += max(rows, 0)
        elif word == "INSERT":
            COUNTS[f"{word} rows"] += rows if rows > 0 else statements
    return result


def _install() -> None:
    from django.db.backends.signals import connection_created

    def created(sender, connection, **kwargs):  # noqa: ANN001
        if _count not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count)

    connection_created.connect(created, weak=False)


def _dump(path: str) -> None:
    while True:
        time.sleep(0.5)
        with _lock:
            data = dict(COUNTS)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


if __name__ == "__main__":
    from chatweb.serve import loop_install

    loop_install()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    import django

    django.setup()
    _install()
    if os.environ.get("BENCH_SQL_COUNTS"):
        threading.Thread(target=_dump, args=(os.environ["BENCH_SQL_COUNTS"],), daemon=True).start()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()

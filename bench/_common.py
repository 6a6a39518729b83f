"""Shared pieces of the benchmarks: a live chatweb (Daphne subprocess), process stats, percentiles.

Nothing here asserts anything; the benches print figures.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
sys.path.insert(0, str(ROOT))
from tests.live import die_with_parent  # noqa: E402 - a server outlives no benchmark


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


class ProcStats:
    """CPU seconds and resident memory of one process, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def threads(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0


def machine() -> dict[str, Any]:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except Exception:
        commit = "?"
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
    }


class Chatweb:
    """chatweb served by Daphne, prepared like tests/live.py does: one worker, or several behind nginx.

    Each server runs through bench/_serve.py, which counts the SQL statements the process
    runs (writes and reads) into ``<data_dir>/sql_counts-<worker>.json`` twice a second.
    With ``workers`` > 1, nginx (Debian's package) serves deploy/nginx.conf in front of them,
    its upstream pointed at the workers' loopback ports, and ``port`` is nginx's.
    """

    def __init__(
        self,
        *,
        upstream_base_url: str,
        database_url: str | None = None,
        redis_url: str | None = None,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        self.wrap = wrap or []  # e.g. ["py-spy", "record", "-o", "out.svg", "--"]
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="chatweb-bench-"))
        self.own_dir = data_dir is None
        self.upstream_base_url = upstream_base_url
        self.database_url = database_url
        self.redis_url = redis_url
        self.workers = workers
        self.extra_env = extra_env or {}
        self.port = 0
        self.processes: list[subprocess.Popen] = []
        self.proxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen | None:
        return self.processes[0] if self.processes else None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
        for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "STATIC_ROOT", "CSRF_TRUSTED_ORIGINS"):
            env.pop(name, None)
        env.update(
            DJANGO_SETTINGS_MODULE="chatweb.settings",
            CHATWEB_DATA_DIR=str(self.data_dir),
            LOCAL_MODEL="0",
            OPENAI_API_KEY="sk-x",
            OPENAI_BASE_URL=self.upstream_base_url,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            DEBUG="0",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            BENCH_SQL_COUNTS=str(self.data_dir / "sql_counts.json"),
        )
        if self.database_url:  # the database outlives this data directory: so must the key of its encrypted rows
            env["DATABASE_URL"] = self.database_url
            env["SECRET_KEY"] = "chatweb-bench-" + "k" * 40
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)[:200]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str, timeout: float = 600) -> Any:
        """Run Python in ``manage.py shell``; it must print one JSON line last, which is returned."""
        out = self.manage("shell", "-c", code, timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def prepare(self) -> Chatweb:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("sync_providers")
        return self

    def start(self) -> Chatweb:
        ports = [free_port() for _ in range(self.workers)]
        proxy_port = free_port() if self.workers > 1 else None
        # Behind nginx the site's origin is nginx's, as CHATWEB_ORIGIN says in compose.yaml.
        origin = {"CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{proxy_port}"} if proxy_port else {}
        for index, port in enumerate(ports):
            log = (self.data_dir / f"daphne-{index}.log").open("ab")
            env = {**self.env(), **origin, "BENCH_SQL_COUNTS": str(self.data_dir / f"sql_counts-{index}.json")}
            self.processes.append(
                subprocess.Popen(
                    [
                        *self.wrap,
                        PYTHON,
                        str(BENCH / "_serve.py"),
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "chatweb.asgi:application",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )
            )
            log.close()
        for port, process in zip(ports, self.processes):
            wait_listening(port, process)
        self.port = self._proxy_start(ports, proxy_port) if proxy_port else ports[0]
        return self

    def _proxy_start(self, ports: list[int], port: int) -> int:
        """nginx with deploy/nginx.conf's server block, its upstream the workers, on ``port``."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = (ROOT / "deploy" / "nginx.conf").read_text()
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=0;\n" for p in ports)
        conf = re.sub(r"(upstream chatweb \{\n)(?:    server [^\n]*\n)+", lambda m: m.group(1) + servers, conf)
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port} backlog=4096;")
        prefix = self.data_dir / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        (prefix / "nginx.conf").write_text(
            "daemon off;\nworker_processes 1;\nerror_log logs/error.log warn;\npid logs/nginx.pid;\n"
            "events { worker_connections 16384; }\n"
            f"http {{\naccess_log off;\nclient_body_temp_path {prefix}/tmp;\n{conf}\n}}\n"
        )
        self.proxy = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], cwd=prefix, preexec_fn=die_with_parent
        )
        wait_listening(port, self.proxy)
        return port

    def stats(self) -> ProcStats:
        """The (first) server process: the profiler's child when wrapped."""
        assert self.process is not None
        pid = self.process.pid
        if self.wrap:
            for _ in range(100):
                try:
                    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                except OSError:
                    children = []
                if children:
                    return ProcStats(int(children[0]))
                time.sleep(0.05)
        return ProcStats(pid)

    def all_stats(self) -> list[ProcStats]:
        """Every worker, and nginx when it runs."""
        procs = [ProcStats(p.pid) for p in self.processes]
        return procs + ([ProcStats(self.proxy.pid)] if self.proxy is not None else [])

    def sql_counts(self) -> dict[str, int]:
        """Statements run by the servers so far, by kind, summed over workers; waits for a fresh dump."""
        time.sleep(0.6)
        total: dict[str, int] = {}
        for path in self.data_dir.glob("sql_counts-*.json"):
            try:
                counts = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for kind, count in counts.items():
                total[kind] = total.get(kind, 0) + count
        return total

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.data_dir / "daphne-0.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def user_with_key(self, *, username: str = "bench", superuser: bool = False) -> dict[str, str]:
        """A user, an API key for it and a signed-in session id."""
        code = f"""
import json
from django.contrib.auth import get_user_model
from django.test import Client
from conversations.accounts.api_keys import api_key_create
User = get_user_model()
user, _ = User.objects.get_or_create(username={username!r})
user.is_staff = user.is_superuser = {superuser!r}
user.set_password("bench-password-123")
user.save()
key, raw = api_key_create(user=user, name="bench")
client = Client()
client.force_login(user)
print(json.dumps({{"user_id": user.pk, "key": raw, "session": client.cookies["sessionid"].value}}))
"""
        return self.shell(code)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait()
            self.proxy = None
        for process in self.processes:
            if self.wrap and process.poll() is None:  # let the profiler write its output
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(60)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []

    def cleanup(self) -> None:
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def py_spy(profile: str | None) -> list[str] | None:
    """The command prefix that runs the server under py-spy: raw stacks for .txt, else a flame graph."""
    if not profile:
        return None
    raw = ["--format", "raw"] if profile.endswith(".txt") else []
    return [str(Path(PYTHON).parent / "py-spy"), "record", "-r", "200", *raw, "-o", profile, "--"]


@contextlib.contextmanager
def bench_setup(
    *,
    upstream_args: tuple[str, ...] = (),
    database_url: str | None = None,
    redis_url: str | None = None,
    workers: int = 1,
    profile: str | None = None,
) -> Iterator[tuple[Chatweb, int]]:
    """Start the fake provider and a (not yet prepared) chatweb; yields them with the provider's port.

    If the bench fails, the server's log tail is printed; both are always stopped.
    """
    up_port = free_port()
    upstream = subprocess.Popen(
        [PYTHON, str(BENCH / "_upstream.py"), "--port", str(up_port), *upstream_args], preexec_fn=die_with_parent
    )
    app = Chatweb(
        upstream_base_url=f"http://127.0.0.1:{up_port}/v1",
        database_url=database_url,
        redis_url=redis_url,
        workers=workers,
        wrap=py_spy(profile),
    )
    try:
        wait_listening(up_port, upstream)
        yield app, up_port
    except Exception:
        print(app.log_tail(), file=sys.stderr)
        raise
    finally:
        app.cleanup()
        upstream.terminate()
        upstream.wait()


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def django_setup(env: dict[str, str]) -> None:
    """Set up Django in this process with ``env`` (e.g. ``Chatweb.env()``): a bulk loader's models and connection."""
    os.environ.update(env)
    for name in ("DATABASE_URL", "REDIS_URL"):
        if name not in env:
            os.environ.pop(name, None)
    import django

    django.setup()


def bench_database(pg: str | None, *, sqlite: bool, smoke: bool, default_pg: str, suffix: str) -> str | None:
    """The PostgreSQL URL of a database bench's scratch database, or None for SQLite.

    ``--pg`` names it; ``--sqlite`` is SQLite; else with DATABASE_URL set (a PostgreSQL URL) it is a
    database named after DATABASE_URL's plus ``suffix`` on the same server, never DATABASE_URL's own
    (the bench drops and creates it); else ``--smoke`` runs on SQLite and a full or quick run on ``default_pg``.
    """
    if pg:
        return pg
    if sqlite:
        return None
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))
    return None if smoke else default_pg


class BulkTable:
    """A model's table for a bulk loader: its columns and the values of the ones the loader does not set.

    The loader names the columns it fills (``given``, field names or columns, in the order of its rows);
    every other concrete field of the model follows with its default (``get_default()``, or now for an
    ``auto_now``/``auto_now_add`` date), prepared for the database by the field (``get_db_prep_value``).
    A field with a database default is left to the database. So a column added with a default needs no
    change here; one with no default and no NULL raises, naming it: the loader must then set it.

    ``load(rows)`` writes tuples of the given columns' values (Python values; JSON as its text) with COPY
    on PostgreSQL, executemany on SQLite (dates prepared by their field there, as Django writes them).
    """

    def __init__(self, model: Any, given: list[str], *, connection: Any = None) -> None:
        from django.db import connection as default_connection
        from django.db.models import NOT_PROVIDED, DateField, DateTimeField, DecimalField, TimeField, UUIDField
        from django.utils import timezone

        self.connection = connection or default_connection
        self.table = model._meta.db_table
        by_name = {}
        for f in model._meta.concrete_fields:
            by_name[f.name] = by_name[f.column] = f
        unknown = [name for name in given if name not in by_name]
        if unknown:
            raise RuntimeError(f"{model.__name__} has no fields {unknown}: the loader's columns are stale")
        fields = [by_name[name] for name in given]
        self.rest_fields = []
        self.rest: list[Any] = []
        for f in model._meta.concrete_fields:
            if f in fields or getattr(f, "generated", False) or f.db_default is not NOT_PROVIDED:
                continue
            if f.primary_key and getattr(f, "db_returning", False):
                continue  # an auto-increment id the loader leaves to the database
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                value = timezone.now() if isinstance(f, DateTimeField) else timezone.now().date()
            else:
                value = f.get_default()
            if isinstance(value, enum.Enum):  # a TextChoices member: its value, as the database stores it
                value = value.value
            if value is None and not f.null:
                raise RuntimeError(
                    f"{model.__name__}.{f.name} ({self.table}.{f.column}) has no default and no NULL:"
                    " the loader must set it"
                )
            self.rest_fields.append(f)
            self.rest.append(f.get_db_prep_value(value, self.connection, prepared=False))
        self.rest = tuple(self.rest)
        self.columns = [f.column for f in fields] + [f.column for f in self.rest_fields]
        self.prepare = (
            [
                (i, f)
                for i, f in enumerate(fields)
                if isinstance(f, (DateField, TimeField, DecimalField, UUIDField))  # DateTimeField is a DateField
            ]
            if self.connection.vendor == "sqlite"
            else []
        )

    def load(self, rows: Iterable[tuple], batch: int = 20_000) -> int:
        """Write the rows in one transaction; returns how many."""
        from django.db import transaction

        self.connection.ensure_connection()
        count = 0
        names = ", ".join(self.columns)
        rest = self.rest
        with transaction.atomic(using=self.connection.alias):
            if self.connection.vendor == "postgresql":
                with (
                    self.connection.connection.cursor() as cur,
                    cur.copy(f"COPY {self.table} ({names}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row + rest)
                        count += 1
                return count
            sql = f"INSERT INTO {self.table} ({names}) VALUES ({', '.join('?' * len(self.columns))})"
            prepare = [(i, f, self.connection) for i, f in self.prepare]
            chunk: list[tuple] = []
            cur = self.connection.connection.cursor()
            for row in rows:
                if prepare:
                    row = list(row)
                    for i, f, conn in prepare:
                        row[i] = f.get_db_prep_value(row[i], conn, prepared=False)
                    row = tuple(row)
                chunk.append(row + rest)
                if len(chunk) >= batch:
                    cur.executemany(sql, chunk)
                    count += len(chunk)
                    chunk.clear()
            cur.executemany(sql, chunk)
            cur.close()
            return count + len(chunk)

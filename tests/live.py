"""The real app as a subprocess, for end-to-end browser tests.

``LiveApp`` prepares a private data directory (SQLite, secret key), runs
``migrate`` and ``sync_providers`` against it, and serves ``chatweb.asgi`` with
Daphne on a free loopback port. Its provider is a ``FakeUpstream`` living in the
test process, so tests script the model's replies while a browser drives the page.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent


def die_with_parent() -> None:
    """A ``preexec_fn``: the child is sent SIGTERM when the process that started it dies.

    A killed test run or benchmark then leaves no server behind holding a port and
    database connections for the next run to trip over.
    """
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 is PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveApp:
    """chatweb served by Daphne with its own SQLite file, the in-memory layer and a fake provider."""

    def __init__(self, *, upstream: FakeUpstream, data_dir: Path, python: str | None = None) -> None:
        self.upstream = upstream
        self.data_dir = data_dir
        self.python = python or sys.executable
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "daphne.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
        for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "STATIC_ROOT", "CSRF_TRUSTED_ORIGINS"):
            env.pop(name, None)
        env.update(
            DJANGO_SETTINGS_MODULE="chatweb.settings",
            CHATWEB_DATA_DIR=str(self.data_dir),
            LOCAL_MODEL="0",
            OPENAI_API_KEY="sk-fake",
            OPENAI_BASE_URL=self.upstream.base_url,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            STREAM_SAVE_INTERVAL="0.2",
            UPSTREAM_BACKOFF_BASE="0.01",
            UPSTREAM_BACKOFF_MAX="0.05",
            UPSTREAM_READ_TIMEOUT="10",
            DEBUG="0",
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, timeout: float = 30.0) -> LiveApp:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("sync_providers")
        for _attempt in range(3):  # another process may take the free port before Daphne binds it
            self.port = free_port()
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                [
                    self.python,
                    "-m",
                    "chatweb.serve",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "chatweb.asgi:application",
                ],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
            log.close()
            if self._wait_listening(timeout):
                return self
            self.stop()
        raise RuntimeError(f"Daphne did not start; its log:\n{self.log()}")

    def _wait_listening(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

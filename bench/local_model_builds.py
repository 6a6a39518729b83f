"""Bench: the bundled model's speed under two or more builds of llama.cpp, side by side.

Each ``--python`` is the interpreter of a virtualenv holding one build of
llama-cpp-python (for example the portable wheel `make install-local` builds, and one
compiled with other CMake flags). One SmolLM2 server per build runs on its own
loopback port; every round asks each the same streamed question with the same seed,
alternating which goes first, one request at a time. Printed per build: the CPU
features llama.cpp reports, generation tokens/s (pieces after the first over the
time between the first and the last) and the server's CPU per token, read from
/proc (which other load on the machine moves less than wall time).

    .venv/bin/python bench/local_model_builds.py --python .venv/bin/python --python /tmp/other/bin/python
    .venv/bin/python bench/local_model_builds.py --python .venv/bin/python --smoke   # one build: that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import free_port  # noqa: E402

from conversations.providers.localmodel import MODEL_ALIAS, server_command, server_environment  # noqa: E402

PROMPT = "Write a long story about the sea."
MAX_TOKENS = 200
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def features(python: str) -> str:
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


class Server:
    def __init__(self, python: str, stack: ExitStack) -> None:
        self.python = python
        self.port = free_port()
        command = [python, *server_command(port=self.port, context=512)[1:]]
        self.process = subprocess.Popen(
            command,
            env=server_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        stack.callback(lambda: os.killpg(self.process.pid, signal.SIGKILL))
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"the server of {python} did not start")
                time.sleep(0.2)

    def ask(self, seed: int) -> tuple[float, float]:
        """(tokens/s while generating, server CPU seconds per token) of one streamed reply."""
        body = {
            "model": MODEL_ALIAS,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
            "seed": seed,
            "max_tokens": MAX_TOKENS,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        cpu_before = cpu_seconds(self.process.pid)
        stamps: list[float] = []
        with urllib.request.urlopen(request, timeout=120) as response:
            for line in response:
                if line.startswith(b"data: {") and b'"content"' in line:
                    stamps.append(time.monotonic())
        cpu = cpu_seconds(self.process.pid) - cpu_before
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]), cpu / len(stamps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", required=True, help="a venv's python with a llama.cpp build")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one round of 20-token replies: that it runs, not figures"
        " (with one --python, the build `make install-local` made, it needs nothing else)",
    )
    args = parser.parse_args()
    global MAX_TOKENS
    if args.smoke:
        args.rounds, MAX_TOKENS = 1, 20
    with ExitStack() as stack:
        servers = [Server(python, stack) for python in args.python]
        for server in servers:
            server.ask(seed=0)  # warm up
        results: dict[str, list[tuple[float, float]]] = {s.python: [] for s in servers}
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for server in order:
                results[server.python].append(server.ask(seed=round_ + 1))
    print(f"SmolLM2-135M Q4_1, {os.cpu_count()} cores, {args.rounds} rounds alternating, {MAX_TOKENS} tokens at most")
    for python, rows in results.items():
        rates = [rate for rate, _ in rows]
        cpu = [per_token for _, per_token in rows]
        print(f"{python}\n  {features(python)}")
        print(
            f"  tokens/s median {statistics.median(rates):.1f} (min {min(rates):.1f}, max {max(rates):.1f}); "
            f"server CPU per token median {statistics.median(cpu) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()

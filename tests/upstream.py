"""A real loopback HTTP server that speaks OpenAI's Chat Completions protocol, for tests.

It stands in for a provider: tests script what it answers next (replies streamed
or not, HTTP errors, error events mid-stream, raw SSE bytes split anyhow, delays,
dropped connections) and read back the requests it received. With nothing
scripted it echoes the last user message.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """A successful completion; streamed word by word when the request streams."""

    text: str
    pieces: list[str] | None = None
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: bool = True
    fail_after: int | None = None
    """Stream only: after this many pieces, send an error event (``error``) or drop the connection."""
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Error:
    status: int
    message: str = "upstream error"
    type: str = "server_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Raw:
    """A 200 event stream written verbatim: bytes pieces, floats are pauses between them."""

    parts: list[bytes | float]
    content_type: str = "text/event-stream"


@dataclass
class Drop:
    """Close the connection without answering."""


@dataclass
class Hang:
    """Wait this long before answering with the next scripted response (or the echo)."""

    seconds: float
    then: Reply | Error | Raw | None = None


Response = Reply | Error | Raw | Drop | Hang


class FakeUpstream:
    def __init__(self) -> None:
        self.script_queue: deque[Response] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.models = ["fake-model", "fake-model-2", "text-embedding-3-small"]
        self._lock = threading.Lock()
        upstream = self

        class Handler(_Handler):
            fake = upstream

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *responses: Response) -> None:
        with self._lock:
            self.script_queue.extend(responses)

    def reset(self) -> None:
        with self._lock:
            self.script_queue.clear()
            self.requests.clear()
            self.headers.clear()

    def next_response(self, body: dict[str, Any]) -> Response:
        with self._lock:
            if self.script_queue:
                return self.script_queue.popleft()
        last_user = next(
            (m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"), ""
        )
        return Reply(text=f"You said: {last_user}")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-reply is part of the tests (timeouts, stop), not an error."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeUpstream
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.fake.models]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.fake._lock:
            self.fake.requests.append(body)
            self.fake.headers.append(dict(self.headers))
        response = self.fake.next_response(body)
        if isinstance(response, Hang):
            time.sleep(response.seconds)
            response = response.then or self.fake.next_response(body)
        if isinstance(response, Drop):
            self._drop()
        elif isinstance(response, Error):
            error = {"message": response.message, "type": response.type, "param": response.param, "code": response.code}
            self._json(response.status, {"error": error}, response.headers)
        elif isinstance(response, Raw):
            self._stream_start({}, content_type=response.content_type)
            for part in response.parts:
                if isinstance(part, float):
                    time.sleep(part)
                else:
                    self._chunk(part)
            self._chunk(b"")
        elif body.get("stream"):
            self._stream_reply(body, response)
        else:
            self._json(200, _completion(body, response), response.headers)

    def _stream_reply(self, body: dict[str, Any], reply: Reply) -> None:
        pieces = reply.pieces if reply.pieces is not None else _words(reply.text)
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.get("model", "")

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        self._stream_start(reply.headers)
        self._chunk(event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        for i, piece in enumerate(pieces):
            if reply.fail_after is not None and i == reply.fail_after:
                if reply.error is None:
                    self._drop()
                    return
                self._chunk(f"data: {json.dumps({'error': reply.error})}\n\n".encode())
                self._chunk(b"")
                return
            if reply.delay:
                time.sleep(reply.delay)
            self._chunk(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        self._chunk(event([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]))
        if reply.usage and (body.get("stream_options") or {}).get("include_usage"):
            self._chunk(event([], usage=_usage(body, reply)))
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _stream_start(self, headers: dict[str, str], content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        """One HTTP chunk, flushed at once so each arrives as its own network write."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.close_connection = True


def _words(text: str) -> list[str]:
    """Split text into pieces that concatenate back to it exactly, roughly a word each."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [p for p in pieces if p]


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    completion = len(reply.pieces if reply.pieces is not None else _words(reply.text))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(body, reply) if reply.usage else None,
    }

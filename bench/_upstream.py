"""A fast loopback provider for the benches: raw asyncio, HTTP/1.1 keep-alive, OpenAI's protocol.

It answers instantly with a fixed reply (``--tokens`` pieces), streamed or not, and
serves ``/v1/models``. With ``--rate R`` a stream sends R pieces per second, and each
piece carries its emit time as ``@<unix time> `` so a client can measure how long the
piece took to reach it; with ``--paragraph K`` every K-th piece ends a paragraph, so the
reply has Markdown blocks for the chat to format as they finish. Run it in a process of its own:

    python bench/_upstream.py --port 9000 [--tokens 20] [--rate 0] [--paragraph 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODELS = json.dumps(
    {
        "object": "list",
        "data": [{"id": "bench-model", "object": "model", "created": 1700000000, "owned_by": "bench"}],
    }
).encode()


def _head(status: str, ctype: str, length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-type: {ctype}"]
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream:
    def __init__(self, tokens: int, rate: float, paragraph: int = 0) -> None:
        self.tokens = tokens
        self.rate = rate
        self.paragraph = paragraph
        self.counter = 0
        self.word = "tok "

    def reply(self, model: str) -> bytes:
        self.counter += 1
        text = self.word * self.tokens
        return json.dumps(
            {
                "id": f"chatcmpl-up{self.counter}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": self.tokens, "total_tokens": 5 + self.tokens},
            }
        ).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == "content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                if path.endswith("/models"):
                    writer.write(_head("200 OK", "application/json", len(MODELS)) + MODELS)
                elif path.endswith("/chat/completions") and method == "POST":
                    request = json.loads(body or b"{}")
                    model = request.get("model", "bench-model")
                    if request.get("stream"):
                        await self.stream(writer, model, request)
                    else:
                        data = self.reply(model)
                        writer.write(_head("200 OK", "application/json", len(data)) + data)
                else:
                    data = b'{"error": {"message": "not found", "type": "invalid_request_error"}}'
                    writer.write(_head("404 Not Found", "application/json", len(data)) + data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stream(self, writer: asyncio.StreamWriter, model: str, request: dict) -> None:
        self.counter += 1
        cid = f"chatcmpl-up{self.counter}"
        created = int(time.time())
        writer.write(_head("200 OK", "text/event-stream", None))

        def event(delta: dict, finish: str | None = None) -> bytes:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return _chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        if self.rate <= 0:
            parts = [event({"role": "assistant", "content": self.word})]
            parts += [event({"content": self.word}) for _ in range(self.tokens - 1)]
            parts.append(event({}, "stop"))
            writer.write(b"".join(parts))
        else:
            interval = 1.0 / self.rate
            start = time.monotonic()
            for i in range(self.tokens):
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                ends_paragraph = self.paragraph and i % self.paragraph == self.paragraph - 1
                delta = {"content": f"@{time.time():.6f} " + ("\n\n" if ends_paragraph else "")}
                if i == 0:
                    delta["role"] = "assistant"
                writer.write(event(delta))
            writer.write(event({}, "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": self.tokens, "total_tokens": 5 + self.tokens},
            }
            writer.write(_chunk(b"data: " + json.dumps(usage).encode() + b"\n\n"))
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.0, help="pieces per second per stream; 0: all at once")
    parser.add_argument("--paragraph", type=int, default=0, help="a paragraph ends every this many pieces")
    args = parser.parse_args()
    upstream = Upstream(args.tokens, args.rate, args.paragraph)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", args.port, backlog=4096, limit=2**20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())

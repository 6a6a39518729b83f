"""The floor under the gateway figures: an ASGI app that does nothing, served by Daphne.

It answers every POST with a fixed chat completion (JSON, or the same as one server-sent
event when the body asks to stream) without reading it, so a request to it costs only
Daphne's HTTP handling. bench/gateway.py serves it as chatweb is served (chatweb/serve.py) and reports
what it adds over the provider alone: the part of chatweb's added latency that is the
server's, not chatweb's.

    PYTHONPATH=.. python -m chatweb.serve -b 127.0.0.1 -p 9000 _floor:application   (from bench/)
"""

from __future__ import annotations

import json
from typing import Any

TEXT = "tok " * 20
REPLY = json.dumps(
    {
        "id": "chatcmpl-floor",
        "object": "chat.completion",
        "created": 0,
        "model": "floor",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
    }
).encode()
EVENTS = (
    b"data: "
    + json.dumps(
        {
            "id": "chatcmpl-floor",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "floor",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": TEXT}, "finish_reason": None}],
        }
    ).encode()
    + b"\n\ndata: [DONE]\n\n"
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    stream = b'"stream": true' in body or b'"stream":true' in body
    data, kind = (EVENTS, b"text/event-stream") if stream else (REPLY, b"application/json")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", kind), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})

"""Server-sent events read straight from a provider's bytes.

Chat providers stream completions as ``text/event-stream``: lines end at ``\\r\\n``,
``\\r`` or ``\\n``, an empty line ends an event, ``data:`` lines join with ``\\n``,
``event:`` names it, and lines starting with ``:`` are comments (keep-alives).
Parsing the bytes as they arrive, without decoding them to text line by line first,
keeps a streamed piece's cost down; JSON is parsed from the bytes by the caller.
"""

from __future__ import annotations

CONTENT_TYPE = "text/event-stream"


class EventParser:
    """Feed it the body's bytes in whatever pieces the network gives; it returns the events each completes."""

    def __init__(self) -> None:
        self._rest = b""  # the line begun but not yet ended
        self._after_cr = False  # the last piece ended with \r: a \n starting the next one belongs to it
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """The (event type, data) of each event ``chunk`` completes; the type is "" when the event names none."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        buffer = self._rest + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._rest = buffer.split(b"\n")
        events = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._event, b"\n".join(self._data)))
                self._event, self._data = "", []
            elif not line.startswith(b":"):
                name, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if name == b"data":
                    self._data.append(value)
                elif name == b"event":
                    self._event = value.decode("utf-8", "replace")
        return events

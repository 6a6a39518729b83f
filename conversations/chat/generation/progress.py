"""What a generation has produced so far, shared by its reader, publisher, control listener and end."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from conversations.core.outages import (
    Outage,
)
from conversations.ledger.metering.metered import Metered

logger = logging.getLogger("conversations.chat.generation")


saving_outage = Outage(logger, "Saving streaming replies", database=True)


publishing_outage = Outage(logger, "Publishing replies to the channel layer")


@dataclass
class Progress:
    """What a generation has produced so far; shared with its control listener."""

    text: str = ""
    prefix: str = ""  # a continued reply's text before this call, which ``text`` starts with
    earlier_usage: tuple[int, int, bool] = (0, 0, False)  # and its (prompt, completion, estimated) tokens
    published: int = 0  # how much of text the sockets were sent
    finish_reason: str = ""
    usage: dict[str, Any] | None = None
    stop_requested: bool = False
    too_long: bool = False  # cut at CHAT_REPLY_MAX_CHARS
    reading_done: asyncio.Event = field(default_factory=asyncio.Event)  # the provider's stream ended, however
    upstream_model: str = ""
    request: list[dict[str, str]] | None = None  # the messages sent to the provider
    parameters: dict[str, Any] = field(default_factory=dict)  # and the chat's parameters sent with them
    metered: Metered = field(kw_only=True)  # the completion: its reservation, route and attempts
    blocks_end: int = 0  # how much of text the sockets were sent as finished Markdown blocks
    blocks_html: str = ""  # those blocks, rendered and sanitised
    formatted_at: float = field(default_factory=time.monotonic)  # when finished blocks were last looked for

    @property
    def new_text(self) -> str:
        """What this call wrote: all of ``text`` but a continued reply's earlier part."""
        return self.text[len(self.prefix) :]

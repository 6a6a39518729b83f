"""A completion under way, as every step of metering sees it (``Metered``), and the statuses it ends
with. Its own module because the reservation, the call, the settlement and the log all share it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from conversations.models import (
    ChatModel,
    Message,
    StoredCompletion,
    UsageRecord,
)
from conversations.providers.routes import Route

Status = StoredCompletion.Status
# A chat reply's state, as a completion's status.
TURN_STATUS = {
    Message.Status.COMPLETE: Status.COMPLETED,
    Message.Status.ERROR: Status.ERROR,
    Message.Status.STOPPED: Status.STOPPED,
    Message.Status.INTERRUPTED: Status.INTERRUPTED,
}


@dataclass
class Metered:
    """A completion under way: whose, of which model, its reservation, and where it went."""

    model: ChatModel | None  # None: a chat reply whose model was deleted since
    name: str  # the chat model's name, as users and the ledger know it
    user_id: int
    source: str  # StoredCompletion.Source
    record: UsageRecord | None
    request_id: str = ""
    message_id: int | None = None
    started: float = field(default_factory=time.monotonic)
    first_content_at: float | None = None  # when a stream's first content came
    route: Route | None = None  # the deployment that answered, or was tried last
    attempts: list[dict[str, Any]] = field(default_factory=list)  # the deployments that failed

    @property
    def latency_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)

    @property
    def tokens(self) -> int:
        """The reservation's estimate, which a deployment's tokens-per-minute counts."""
        return (self.record.prompt_tokens + self.record.completion_tokens) if self.record else 0

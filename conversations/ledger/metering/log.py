"""A completion's one ``chatweb.completions`` log line and its counts in the metrics. Its own module
because the call logs each failed deployment there too."""

from __future__ import annotations

import logging
import time

from conversations.core import metrics
from conversations.ledger.metering.metered import Metered
from conversations.models import UsageRecord

completion_logger = logging.getLogger("chatweb.completions")


def metering_log(*, metered: Metered, status: str, prompt_tokens: int | None, completion_tokens: int | None) -> None:
    """The completion's one ``chatweb.completions`` line (ids, model, status, latency, tokens; never content),
    and its counts in the metrics."""
    record = metered.record
    metrics.completion_observe(
        model=metered.name,
        deployment=metered.route.label if metered.route else "none",
        source=metered.source,
        status=status,
        user_id=metered.user_id,
        seconds=time.monotonic() - metered.started,
        first_token_seconds=metered.first_content_at - metered.started if metered.first_content_at else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=record.cost if record is not None and record.state == UsageRecord.State.SETTLED else None,
    )
    ids: dict[str, str | int | None] = (
        {"request_id": metered.request_id} if metered.request_id else {"message_id": metered.message_id}
    )
    completion_logger.info(
        "completion",
        extra={
            **ids,
            "user_id": metered.user_id,
            "model": metered.name,
            "source": metered.source,
            "status": status,
            "latency_ms": metered.latency_ms,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "attempts": len(metered.attempts) + (metered.route is not None),
        },
    )

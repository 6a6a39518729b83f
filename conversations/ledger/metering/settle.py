"""The end of a completion in the ledger: its reservation settled to what was used, and the stored
completion kept, each naming the deployment that answered."""

from __future__ import annotations

from typing import Any

from conversations.ledger.metering.metered import Metered
from conversations.ledger.usage import usage_reported, usage_settle
from conversations.models import (
    StoredCompletion,
    UsageRecord,
)
from conversations.providers.tokens import (
    messages_tokens_count,
    tokens_count,
)


def metering_settle(
    *,
    metered: Metered,
    usage: dict[str, Any] | None,
    text: str,
    messages: list[dict[str, Any]],
    stored: StoredCompletion | None = None,
) -> UsageRecord | None:
    """Settle the reservation to what was used, naming the deployment that answered.

    The provider's counts when it reported them, else ``text`` (all that was generated)
    and ``messages`` counted here and marked estimated. ``stored``, when given, is
    saved first and linked. Callers hold the transaction that groups these writes.
    """
    if stored is not None:
        metering_store(metered=metered, stored=stored)
    record = metered.record
    if record is None:
        return None
    if metered.route is not None:
        record.provider, record.upstream_model = metered.route.provider, metered.route.upstream.model
    counted = "" if usage_reported(usage) else text
    return usage_settle(
        record=record,
        usage=usage,
        prompt_tokens_estimate=messages_tokens_count(messages) if counted else 0,
        completion_tokens_estimate=tokens_count(counted),
        stored_completion=stored,
    )


def metering_store(*, metered: Metered, stored: StoredCompletion) -> None:
    """Keep ``stored`` (unsaved), naming the deployment that answered and the attempts that failed before."""
    if metered.route is not None:
        stored.provider, stored.upstream_model = metered.route.provider, metered.route.upstream.model
    stored.attempts = metered.attempts
    stored.save(force_insert=True)

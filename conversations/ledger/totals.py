"""The ledger's aggregates: totals, grouped and per UTC day, each one query (Sum/Count); money stays Decimal."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from conversations.ledger.prices import COST_PLACES
from conversations.models import Conversation, UsageRecord

UTC = datetime.timezone.utc


ZERO = Decimal(0)


# Aggregates of one group of ledger rows. Coalesce keeps empty groups at 0 rather than None.
_ZERO_COST = Value(ZERO, output_field=UsageRecord._meta.get_field("cost"))


AGGREGATES: dict[str, Any] = {
    "cost": Coalesce(Sum("cost"), _ZERO_COST),
    "requests": Count("id"),
    "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
    "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
    "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
    "reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
}


@dataclass(frozen=True)
class Totals:
    cost: Decimal = ZERO
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_exact(self) -> str:
        """The cost to the ledger's 8 places, as plain digits (never ``0E-8``)."""
        return decimal_str(self.cost)

    @classmethod
    def of(cls, row: dict[str, Any]) -> Totals:
        return cls(
            cost=_decimal(row["cost"]),
            requests=int(row["requests"] or 0),
            prompt_tokens=int(row["prompt_tokens"] or 0),
            cached_tokens=int(row["cached_tokens"] or 0),
            completion_tokens=int(row["completion_tokens"] or 0),
            reasoning_tokens=int(row["reasoning_tokens"] or 0),
        )


def decimal_str(value: Decimal) -> str:
    return f"{_decimal(value).quantize(COST_PLACES):f}"


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value or 0)


def totals(queryset: QuerySet[UsageRecord]) -> Totals:
    """One aggregate query over ``queryset``."""
    return Totals.of(queryset.aggregate(**AGGREGATES))


def grouped(queryset: QuerySet[UsageRecord], *keys: str, order: Iterable[str] = ("-cost",)) -> list[dict[str, Any]]:
    """One GROUP BY query: each row has the ``keys`` and a ``totals`` (Totals)."""
    rows = queryset.order_by().values(*keys).annotate(**AGGREGATES).order_by(*order, *keys)
    return [{**{key: row[key] for key in keys}, "totals": Totals.of(row)} for row in rows]


def by_day(queryset: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    """Totals per UTC day, oldest first."""
    day = TruncDate("created_at", tzinfo=UTC)
    return grouped(queryset.annotate(day=day), "day", order=())


def conversation_totals(*, conversation: Conversation) -> Totals:
    """What a conversation's replies cost: its messages' ledger rows, owned by its user."""
    return totals(UsageRecord.objects.filter(user_id=conversation.user_id, message__conversation=conversation))

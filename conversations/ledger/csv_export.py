"""A user's ledger as CSV, streamed row by row, with cells a spreadsheet will not run as formulas."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.db.models import QuerySet

from conversations.ledger.totals import UTC, decimal_str
from conversations.models import UsageRecord

CSV_HEADER = [
    "date", "time_utc", "model", "provider", "source", "prompt_tokens", "cached_tokens",
    "completion_tokens", "reasoning_tokens", "cost_usd", "estimated", "priced", "state",
]  # fmt: skip


CSV_FIELDS = [
    "created_at", "model", "provider", "api_key_id", "prompt_tokens", "cached_tokens",
    "completion_tokens", "reasoning_tokens", "cost", "estimated", "priced", "state",
]  # fmt: skip


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_row(row: dict[str, Any]) -> list[Any]:
    when = row["created_at"].astimezone(UTC)
    return [
        when.date().isoformat(),
        when.strftime("%H:%M:%S"),
        row["model"],
        row["provider"],
        # /v1 calls carry their key; chat replies carry a message, or nothing once their conversation is deleted.
        "api" if row["api_key_id"] is not None else "chat",
        row["prompt_tokens"],
        row["cached_tokens"],
        row["completion_tokens"],
        row["reasoning_tokens"],
        decimal_str(row["cost"]),
        "true" if row["estimated"] else "false",
        "true" if row["priced"] else "false",
        row["state"],
    ]


def _csv_queryset(queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord, dict[str, Any]]:
    rows: QuerySet[UsageRecord, dict[str, Any]] = queryset.order_by("created_at", "id").values(*CSV_FIELDS)
    return rows  # values() of a list of names: django-stubs cannot say the rows' type


def _safe(value: Any) -> Any:
    """Keep spreadsheet apps from running a model name as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_lines(queryset: QuerySet[UsageRecord]) -> Iterator[str]:
    """The header, then one line per ledger row, oldest first."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for row in _csv_queryset(queryset).iterator(chunk_size=2000):
        yield writer.writerow([_safe(v) for v in _csv_row(row)])


async def acsv_lines(queryset: QuerySet[UsageRecord]) -> AsyncIterator[str]:
    """``csv_lines`` for ASGI: reads the rows with the async ORM so the response streams."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    async for row in _csv_queryset(queryset).aiterator(chunk_size=2000):
        yield writer.writerow([_safe(v) for v in _csv_row(row)])

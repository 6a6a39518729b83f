"""Row ids from clients, bounded by what the database's bigint holds: "²", "-1" or 10**30 name no row
and are not found, instead of failing the query."""

from __future__ import annotations

import re
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db.models import Q

ROW_ID_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def row_id(raw: str) -> int | None:
    """The id ``raw`` names (ASCII digits), or None when it names none."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= ROW_ID_MAX else None


def row_id_valid(value: int) -> bool:
    """Whether an id from a URL (Django's ``<int:>``) fits the database's bigint."""
    return value <= ROW_ID_MAX


def page_cursor(at: datetime, pk: int) -> str:
    """Where a newest-first page ended: the last row's time and id."""
    return f"{at.isoformat()}~{pk}"


def page_cursor_parse(raw: str) -> tuple[datetime, int] | None:
    """The (time, id) a cursor names, or None when it names none (garbled or hand-made)."""
    at, _, pk = raw.partition("~")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    number = row_id(pk)
    if number is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)), number


def older_than(cursor: tuple[datetime, int], *, field: str) -> Q:
    """Rows after ``cursor`` in a (``field``, id) newest-first order."""
    at, pk = cursor
    return Q(**{f"{field}__lt": at}) | Q(**{field: at, "pk__lt": pk})

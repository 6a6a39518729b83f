"""Row ids from clients, bounded by what the database's bigint holds: "²", "-1" or 10**30 name no row
and are not found, instead of failing the query."""

from __future__ import annotations

import re

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

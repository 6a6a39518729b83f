"""The readings of single values every format reader shares: text, a title, a time, a role, a reply's
length. Its own module so the three readers read them the same way."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings

from conversations.models import Message

TITLE_CHARS = 200
ROLES = {"user": Message.Role.USER, "assistant": Message.Role.ASSISTANT, "system": Message.Role.SYSTEM}


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_object(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """A JSON list, or an empty one for anything else."""
    return value if isinstance(value, list) else []


def as_title(value: Any) -> str:
    title = " ".join(as_text(value).split())[:TITLE_CHARS]
    return title or "Imported chat"


def as_time(value: Any) -> datetime | None:
    """A time from an export: epoch seconds (or milliseconds), or ISO 8601."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            seconds = value / 1000 if value > 1e11 else value
            return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
        if isinstance(value, str) and value:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def as_content(value: str) -> str:
    return value[: settings.CHAT_REPLY_MAX_CHARS]

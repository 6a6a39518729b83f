"""A short-lived per-process cache of the rows every completion reads: API keys, models, prices, limits.

Reading them from the database took four queries and most of the server's time
for each /v1 call (bench/gateway.py). Entries live ``ROW_CACHE_SECONDS`` (5 by
default). Saving or deleting one of these rows, or a user, clears the cache of the
process that saved it (``apps.py``), so a change applies there at once and on other
workers within that time: the delay an admin may see after revoking a key or
changing a price, model or limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.conf import settings

T = TypeVar("T")
MAX_ENTRIES = 10_000  # many keys tried in a short time empty the cache instead of growing it

_entries: dict[Hashable, tuple[float, Any]] = {}


def rowcache_get(key: Hashable) -> Any | None:
    """The value cached under ``key`` and still fresh, else None."""
    hit = _entries.get(key)
    if hit is None or hit[0] <= time.monotonic():
        return None
    return hit[1]


def rowcache_set(key: Hashable, value: T) -> T:
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[key] = (time.monotonic() + settings.ROW_CACHE_SECONDS, value)
    return value


def rowcache_load(key: Hashable, load: Callable[[], T]) -> T:
    """The cached value for ``key``, loading and caching it when absent; ``load`` must not return None."""
    value = rowcache_get(key)
    return value if value is not None else rowcache_set(key, load())


def rowcache_clear(**_: Any) -> None:
    """Forget everything (a signal receiver: rows changed)."""
    _entries.clear()

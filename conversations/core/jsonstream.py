"""The items of a JSON list read from a file as a stream, with bounded nesting and strings.

ijson's ``items`` gives every event the path from the root as one string ("item.a.a.a…"), so a
document nested n levels deep costs memory and time in n² before any check sees it: a 195 KiB
import nested 100,000 levels grew a worker past 20 GB. This reader builds the items from ijson's
``basic_parse`` events, which carry no path, and stops at the first level deeper than ``max_depth``
or string longer than ``max_string``, having held only the item being read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import ijson


class JsonStreamError(ValueError):
    """The file is not a JSON list this reader accepts; the message says why, for a person."""


def json_list_items(stream: IO[bytes], *, max_depth: int, max_string: int) -> Iterator[Any]:
    """Each item of the JSON list ``stream`` holds, as it is read; JsonStreamError when it is not a list,
    is nested deeper than ``max_depth`` levels (the list itself is the first) or holds a longer string
    than ``max_string`` characters. ``ijson.JSONError`` when it is not valid JSON."""
    events = ijson.basic_parse(stream, use_float=True)
    first = next(events, None)
    if first is None or first[0] != "start_array":
        raise JsonStreamError("The file is not a JSON list.")
    containers: list[dict[str, Any] | list[Any]] = []
    keys: list[str] = []  # the key each open object's next value goes under
    for event, value in events:
        if event in ("start_map", "start_array"):
            if len(containers) + 2 > max_depth:
                raise JsonStreamError(f"The file is nested more than {max_depth} levels deep.")
            containers.append({} if event == "start_map" else [])
            if event == "start_map":
                keys.append("")
            continue
        if event == "map_key":
            keys[-1] = _text(value, max_string)
            continue
        if event in ("end_map", "end_array"):
            if not containers:  # the end of the list
                return
            value = containers.pop()
            if event == "end_map":
                keys.pop()
        elif event == "string":
            value = _text(value, max_string)
        if not containers:
            yield value
        elif isinstance(parent := containers[-1], dict):
            parent[keys[-1]] = value
        else:
            parent.append(value)
    raise JsonStreamError("The file ends before its list does.")


def _text(value: str, max_string: int) -> str:
    if len(value) > max_string:
        raise JsonStreamError(f"The file holds a text of {len(value):,} characters; at most {max_string:,} are read.")
    return value

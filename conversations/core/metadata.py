"""Checks of values that chatweb keeps for callers, shared by /v1 and the admin: no HTTP here."""

from __future__ import annotations

import json
import math

from conversations.core.errors import InvalidInput

METADATA_MAX_PAIRS, METADATA_KEY_MAX, METADATA_VALUE_MAX = 16, 64, 512


def json_kind(value: object) -> str:
    """Name a value's JSON type for messages: 'a string', 'an object', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):  # bool was handled above
        return "an integer"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def json_shown(value: object) -> str:
    """A short JSON rendering of a bad value."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad_type(param: str, expected: str, value: object) -> InvalidInput:
    return InvalidInput(
        f"Invalid type for '{param}': expected {expected}, but got {json_kind(value)}.",
        param=param,
        code="invalid_type",
    )


def metadata_check(metadata: object, *, param: str = "metadata") -> dict[str, str] | None:
    """At most 16 pairs, string keys up to 64 chars, string values up to 512 chars; None allowed."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _bad_type(param, "an object", metadata)
    pairs = metadata
    if len(pairs) > METADATA_MAX_PAIRS:
        raise InvalidInput(
            f"Invalid '{param}': too many pairs. Expected at most {METADATA_MAX_PAIRS}, got {len(pairs)}.",
            param=param,
        )
    for key, value in pairs.items():
        if not isinstance(key, str):
            raise _bad_type(param, "string keys", key)
        if len(key) > METADATA_KEY_MAX:
            raise InvalidInput(
                f"Invalid '{param}': key {json_shown(key)} is {len(key)} characters long; "
                f"keys may have at most {METADATA_KEY_MAX}.",
                param=param,
            )
        if not isinstance(value, str):
            raise _bad_type(f"{param}.{key}", "a string", value)
        if len(value) > METADATA_VALUE_MAX:
            raise InvalidInput(
                f"Invalid '{param}.{key}': value is {len(value)} characters long; "
                f"values may have at most {METADATA_VALUE_MAX}.",
                param=f"{param}.{key}",
            )
    return pairs

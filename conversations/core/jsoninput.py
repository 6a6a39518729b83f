"""JSON from clients (/v1 bodies, chat socket frames), parsed into values every later step can handle.

``json.loads`` accepts what chatweb cannot keep or pass on: ``NaN``, ``Infinity`` and
numbers too large for a float (PostgreSQL's jsonb and providers refuse them), lone
UTF-16 surrogates such as ``"\\ud800"`` (no UTF-8 encoder takes them: not httpx, not
SQLite, not PostgreSQL), U+0000 (PostgreSQL's text and jsonb refuse it), and nesting
so deep that parsing or re-encoding it exhausts Python's recursion limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Far deeper than any real request (OpenAI's structured outputs allow 10 levels of schema
# nesting) and far from Python's recursion limit of 1,000 frames, which json.dumps, the
# database adapters and Django's own frames share when the value is written out again.
MAX_DEPTH = 100
# A \u escape that may decode to a surrogate or U+0000: only then are the strings searched.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_NOT_TEXT = re.compile("[\ud800-\udfff\x00]")


class JsonInputError(ValueError):
    """Input that is not JSON chatweb accepts; the message says why, for the client."""


def _constant(name: str) -> float:
    raise JsonInputError(f"{name} is not a JSON number. Send finite numbers only.")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError(f"The number {text[:40]} is too large. Send finite numbers only.")
    return value


def json_input_parse(raw: str | bytes) -> Any:
    """Parse ``raw`` as JSON, or raise JsonInputError naming what is wrong with it."""
    try:
        # Decoded strictly: json.loads would let UTF-8-encoded surrogates through ("surrogatepass").
        text = raw.decode(json.detect_encoding(raw)) if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise JsonInputError(f"The JSON is nested too deeply; at most {MAX_DEPTH} levels are accepted.") from None
    except JsonInputError:
        raise
    except (ValueError, UnicodeDecodeError):
        raise JsonInputError("We could not parse the JSON body of your request. Send valid JSON.") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise JsonInputError(f"The JSON is nested too deeply; at most {MAX_DEPTH} levels are accepted.")
    if _SUSPECT_ESCAPE.search(text) and _holds_non_text(value):
        raise JsonInputError(
            "The JSON holds a lone UTF-16 surrogate (such as \\ud800) or U+0000, which are not text. "
            "Send valid Unicode text."
        )
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels deep (without recursing)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _holds_non_text(value: Any) -> bool:
    """Whether any string or key holds a surrogate code point or U+0000."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _NOT_TEXT.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False

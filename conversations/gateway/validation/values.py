"""Checks of one JSON value's type or range, each raising an ApiError that names its parameter: the
building blocks of every other check of a request."""

from __future__ import annotations

import math
import re
from typing import Any, TypeGuard

from conversations.core.errors import InvalidInput
from conversations.core.metadata import json_kind, json_shown, metadata_check
from conversations.gateway.api_error import ApiError

NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")


# Small type tests: JSON's types, with Python's bool kept apart from int.


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value)


def bad_type(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        f"Invalid type for '{param}': expected {expected}, but got {json_kind(value)}.",
        param=param,
        code="invalid_type",
    )


def bad_value(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        f"Invalid value for '{param}': expected {expected}, got {json_shown(value)}.", param=param, code="invalid_value"
    )


def missing(param: str) -> ApiError:
    return ApiError(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


# Reusable field checks; each raises ApiError naming `param`.


def object_check(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_type(param, "an object", value)
    return value


def array_check(value: object, param: str, *, nonempty: bool = False, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise bad_type(param, "an array", value)
    if nonempty and not value:
        raise ApiError(
            f"Invalid '{param}': empty array. Expected an array with at least one item.",
            param=param,
            code="empty_array",
        )
    if max_items is not None and len(value) > max_items:
        raise ApiError(
            f"Invalid '{param}': array too long. Expected at most {max_items} items, got {len(value)}.",
            param=param,
            code="array_above_max_length",
        )
    return value


def string_check(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise bad_type(param, "a string", value)
    return value


def boolean_check(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise bad_type(param, "a boolean", value)
    return value


def number_check(value: object, param: str, low: float, high: float) -> None:
    if not is_number(value) or not low <= value <= high:
        raise bad_value(param, f"a number between {low:g} and {high:g}", value)


def integer_check(value: object, param: str, low: int, high: int | None = None) -> None:
    if not _is_int(value):
        raise bad_type(param, "an integer", value)
    if high is None and value < low:
        raise bad_value(param, f"an integer of at least {low}", value)
    if high is not None and not low <= value <= high:
        raise bad_value(param, f"an integer between {low} and {high}", value)


def choice_check(value: object, param: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(f"'{a}'" for a in allowed)
        raise bad_value(param, f"one of {listed}", value)
    return value


def name_check(value: object, param: str) -> str:
    """A function, tool or schema name: 1 to 64 letters, digits, '_' or '-'."""
    name = string_check(value, param)
    if not NAME_PATTERN.fullmatch(name):
        raise bad_value(param, "a name of 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-'", name)
    return name


def metadata_validate(metadata: object, *, param: str = "metadata") -> dict[str, str] | None:
    """``metadata_check`` for a request body: what it rejects is a 400."""
    try:
        return metadata_check(metadata, param=param)
    except InvalidInput as exc:
        raise ApiError(exc.message, param=exc.param, code=exc.code) from None

"""Checks of ``messages``: each message's role, content parts, tool calls and function call, as the
spec's per-role message schemas allow them."""

from __future__ import annotations

from typing import Any

from conversations.gateway.validation.values import (
    array_check,
    bad_type,
    bad_value,
    choice_check,
    missing,
    object_check,
    string_check,
)

ROLES = ("developer", "system", "user", "assistant", "tool", "function")
# Content part types each role may send, as in the spec's per-role message schemas.
PART_TYPES: dict[str, tuple[str, ...]] = {
    "developer": ("text",),
    "system": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}
# Objects a content part carries under its own type's name (image_url, input_audio, file).
PART_OBJECTS = ("image_url", "input_audio", "file")


def content_parts_check(parts: list[Any], param: str, allowed: tuple[str, ...], where: str) -> None:
    for i, raw in enumerate(parts):
        at = f"{param}[{i}]"
        part = object_check(raw, at)
        if "type" not in part:
            raise missing(f"{at}.type")
        kind = string_check(part["type"], f"{at}.type")
        if kind not in allowed:
            listed = ", ".join(f"'{a}'" for a in allowed)
            expected = f"{listed} in {where}" if len(allowed) == 1 else f"one of {listed} in {where}"
            raise bad_value(f"{at}.type", expected, kind)
        if kind in ("text", "refusal"):
            if kind not in part:
                raise missing(f"{at}.{kind}")
            string_check(part[kind], f"{at}.{kind}")
        elif kind in PART_OBJECTS:
            if kind not in part:
                raise missing(f"{at}.{kind}")
            inner = object_check(part[kind], f"{at}.{kind}")
            if kind == "image_url":
                if "url" not in inner:
                    raise missing(f"{at}.image_url.url")
                string_check(inner["url"], f"{at}.image_url.url")


def _content(message: dict[str, Any], at: str, role: str) -> None:
    """Check `content`: a string or a non-empty array of parts; null or absent only where the spec allows."""
    content = message.get("content")
    if content is None:
        if role == "assistant" and any(message.get(k) is not None for k in ("tool_calls", "function_call", "audio")):
            return
        if role == "function" and "content" in message:
            return  # a function message's content is required but nullable
        if "content" not in message:
            raise missing(f"{at}.content")
        raise bad_type(f"{at}.content", "a string or an array of content parts", content)
    if isinstance(content, str):
        return
    if role == "function":
        raise bad_type(f"{at}.content", "a string", content)
    if not isinstance(content, list):
        raise bad_type(f"{at}.content", "a string or an array of content parts", content)
    parts = array_check(content, f"{at}.content", nonempty=True)
    content_parts_check(parts, f"{at}.content", PART_TYPES[role], f"a {role} message")


def _function_call(value: object, param: str) -> None:
    call = object_check(value, param)
    for key in ("name", "arguments"):
        if key not in call:
            raise missing(f"{param}.{key}")
        string_check(call[key], f"{param}.{key}")


def _tool_calls(value: object, param: str) -> None:
    for i, raw in enumerate(array_check(value, param, nonempty=True)):
        at = f"{param}[{i}]"
        call = object_check(raw, at)
        if "id" not in call:
            raise missing(f"{at}.id")
        string_check(call["id"], f"{at}.id")
        kind = choice_check(call.get("type"), f"{at}.type", ("function", "custom"))
        if kind not in call:
            raise missing(f"{at}.{kind}")
        if kind == "function":
            _function_call(call["function"], f"{at}.function")
        else:
            custom = object_check(call["custom"], f"{at}.custom")
            for key in ("name", "input"):
                if key not in custom:
                    raise missing(f"{at}.custom.{key}")
                string_check(custom[key], f"{at}.custom.{key}")


def message_check(raw: object, at: str) -> None:
    message = object_check(raw, at)
    if "role" not in message:
        raise missing(f"{at}.role")
    role = choice_check(message["role"], f"{at}.role", ROLES)
    if role == "function" and "name" not in message:
        raise missing(f"{at}.name")
    if "name" in message:
        string_check(message["name"], f"{at}.name")
    _content(message, at, role)
    if role == "tool":
        if "tool_call_id" not in message:
            raise missing(f"{at}.tool_call_id")
        string_check(message["tool_call_id"], f"{at}.tool_call_id")
    if role == "assistant":
        if message.get("tool_calls") is not None:
            _tool_calls(message["tool_calls"], f"{at}.tool_calls")
        if message.get("function_call") is not None:
            _function_call(message["function_call"], f"{at}.function_call")
        if message.get("refusal") is not None:
            string_check(message["refusal"], f"{at}.refusal")

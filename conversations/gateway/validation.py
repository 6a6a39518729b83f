"""Request checks for /v1, after OpenAI's CreateChatCompletionRequest: a clear 400 instead of an upstream failure."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from conversations.core.errors import InvalidInput
from conversations.core.metadata import json_kind, json_shown, metadata_check

NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# OpenAI's bound on token counts ("Expected a value <= 2147483647"), also what PostgreSQL's integer holds.
INT32_MAX = 2**31 - 1

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


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's SDKs parse into their exception classes."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# Small type tests: JSON's types, with Python's bool kept apart from int.


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value)


def _bad_type(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        f"Invalid type for '{param}': expected {expected}, but got {json_kind(value)}.",
        param=param,
        code="invalid_type",
    )


def _bad_value(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        f"Invalid value for '{param}': expected {expected}, got {json_shown(value)}.", param=param, code="invalid_value"
    )


def _missing(param: str) -> ApiError:
    return ApiError(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


# Reusable field checks; each raises ApiError naming `param`.


def _object(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad_type(param, "an object", value)
    return value


def _array(value: object, param: str, *, nonempty: bool = False, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _bad_type(param, "an array", value)
    if nonempty and not value:
        raise ApiError(
            f"Invalid '{param}': empty array. Expected an array with at least one item.",
            param=param,
            code="empty_array",
        )
    if max_items is not None and len(value) > max_items:
        raise ApiError(
            f"Invalid '{param}': array too long. Expected at most {max_items} items, got {len(value)}.", param=param,
            code="array_above_max_length",
        )
    return value


def _string(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise _bad_type(param, "a string", value)
    return value


def _boolean(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise _bad_type(param, "a boolean", value)
    return value


def _number(value: object, param: str, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:  # type: ignore[operator]
        raise _bad_value(param, f"a number between {low:g} and {high:g}", value)


def _integer(value: object, param: str, low: int, high: int | None = None) -> None:
    if not _is_int(value):
        raise _bad_type(param, "an integer", value)
    if high is None and value < low:  # type: ignore[operator]
        raise _bad_value(param, f"an integer of at least {low}", value)
    if high is not None and not low <= value <= high:  # type: ignore[operator]
        raise _bad_value(param, f"an integer between {low} and {high}", value)


def _choice(value: object, param: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(f"'{a}'" for a in allowed)
        raise _bad_value(param, f"one of {listed}", value)
    return value


def _name(value: object, param: str) -> str:
    """A function, tool or schema name: 1 to 64 letters, digits, '_' or '-'."""
    name = _string(value, param)
    if not NAME_PATTERN.fullmatch(name):
        raise _bad_value(param, "a name of 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-'", name)
    return name


def metadata_validate(metadata: object, *, param: str = "metadata") -> dict[str, str] | None:
    """``metadata_check`` for a request body: what it rejects is a 400."""
    try:
        return metadata_check(metadata, param=param)
    except InvalidInput as exc:
        raise ApiError(exc.message, param=exc.param, code=exc.code) from None


def _content_parts(parts: list[Any], param: str, allowed: tuple[str, ...], where: str) -> None:
    for i, raw in enumerate(parts):
        at = f"{param}[{i}]"
        part = _object(raw, at)
        if "type" not in part:
            raise _missing(f"{at}.type")
        kind = _string(part["type"], f"{at}.type")
        if kind not in allowed:
            listed = ", ".join(f"'{a}'" for a in allowed)
            expected = f"{listed} in {where}" if len(allowed) == 1 else f"one of {listed} in {where}"
            raise _bad_value(f"{at}.type", expected, kind)
        if kind in ("text", "refusal"):
            if kind not in part:
                raise _missing(f"{at}.{kind}")
            _string(part[kind], f"{at}.{kind}")
        elif kind in PART_OBJECTS:
            if kind not in part:
                raise _missing(f"{at}.{kind}")
            inner = _object(part[kind], f"{at}.{kind}")
            if kind == "image_url":
                if "url" not in inner:
                    raise _missing(f"{at}.image_url.url")
                _string(inner["url"], f"{at}.image_url.url")


def _content(message: dict[str, Any], at: str, role: str) -> None:
    """Check `content`: a string or a non-empty array of parts; null or absent only where the spec allows."""
    content = message.get("content")
    if content is None:
        if role == "assistant" and any(message.get(k) is not None for k in ("tool_calls", "function_call", "audio")):
            return
        if role == "function" and "content" in message:
            return  # a function message's content is required but nullable
        if "content" not in message:
            raise _missing(f"{at}.content")
        raise _bad_type(f"{at}.content", "a string or an array of content parts", content)
    if isinstance(content, str):
        return
    if role == "function":
        raise _bad_type(f"{at}.content", "a string", content)
    if not isinstance(content, list):
        raise _bad_type(f"{at}.content", "a string or an array of content parts", content)
    parts = _array(content, f"{at}.content", nonempty=True)
    _content_parts(parts, f"{at}.content", PART_TYPES[role], f"a {role} message")


def _function_call(value: object, param: str) -> None:
    call = _object(value, param)
    for key in ("name", "arguments"):
        if key not in call:
            raise _missing(f"{param}.{key}")
        _string(call[key], f"{param}.{key}")


def _tool_calls(value: object, param: str) -> None:
    for i, raw in enumerate(_array(value, param, nonempty=True)):
        at = f"{param}[{i}]"
        call = _object(raw, at)
        if "id" not in call:
            raise _missing(f"{at}.id")
        _string(call["id"], f"{at}.id")
        kind = _choice(call.get("type"), f"{at}.type", ("function", "custom"))
        if kind not in call:
            raise _missing(f"{at}.{kind}")
        if kind == "function":
            _function_call(call["function"], f"{at}.function")
        else:
            custom = _object(call["custom"], f"{at}.custom")
            for key in ("name", "input"):
                if key not in custom:
                    raise _missing(f"{at}.custom.{key}")
                _string(custom[key], f"{at}.custom.{key}")


def _message(raw: object, at: str) -> None:
    message = _object(raw, at)
    if "role" not in message:
        raise _missing(f"{at}.role")
    role = _choice(message["role"], f"{at}.role", ROLES)
    if role == "function" and "name" not in message:
        raise _missing(f"{at}.name")
    if "name" in message:
        _string(message["name"], f"{at}.name")
    _content(message, at, role)
    if role == "tool":
        if "tool_call_id" not in message:
            raise _missing(f"{at}.tool_call_id")
        _string(message["tool_call_id"], f"{at}.tool_call_id")
    if role == "assistant":
        if message.get("tool_calls") is not None:
            _tool_calls(message["tool_calls"], f"{at}.tool_calls")
        if message.get("function_call") is not None:
            _function_call(message["function_call"], f"{at}.function_call")
        if message.get("refusal") is not None:
            _string(message["refusal"], f"{at}.refusal")


def _function_definition(value: object, param: str) -> None:
    """A function's name, description and JSON Schema parameters (tools[i].function or functions[i])."""
    function = _object(value, param)
    if "name" not in function:
        raise _missing(f"{param}.name")
    _name(function["name"], f"{param}.name")
    if function.get("description") is not None:
        _string(function["description"], f"{param}.description")
    if function.get("parameters") is not None:
        _object(function["parameters"], f"{param}.parameters")
    if function.get("strict") is not None:
        _boolean(function["strict"], f"{param}.strict")


def _tools(value: object) -> None:
    for i, raw in enumerate(_array(value, "tools", max_items=128)):
        at = f"tools[{i}]"
        tool = _object(raw, at)
        if "type" not in tool:
            raise _missing(f"{at}.type")
        kind = _choice(tool["type"], f"{at}.type", ("function", "custom"))
        if kind not in tool:
            raise _missing(f"{at}.{kind}")
        if kind == "function":
            _function_definition(tool["function"], f"{at}.function")
        else:
            custom = _object(tool["custom"], f"{at}.custom")
            if "name" not in custom:
                raise _missing(f"{at}.custom.name")
            _name(custom["name"], f"{at}.custom.name")


def _tool_choice(value: object) -> None:
    if isinstance(value, str):
        _choice(value, "tool_choice", ("none", "auto", "required"))
        return
    if not isinstance(value, dict):
        raise _bad_type("tool_choice", "'none', 'auto', 'required' or an object", value)
    if "type" not in value:
        raise _missing("tool_choice.type")
    kind = _choice(value["type"], "tool_choice.type", ("function", "custom", "allowed_tools"))
    if kind not in value:
        raise _missing(f"tool_choice.{kind}")
    inner = _object(value[kind], f"tool_choice.{kind}")
    if kind == "allowed_tools":
        _choice(inner.get("mode"), "tool_choice.allowed_tools.mode", ("auto", "required"))
        if "tools" not in inner:
            raise _missing("tool_choice.allowed_tools.tools")
        for i, tool in enumerate(_array(inner["tools"], "tool_choice.allowed_tools.tools")):
            _object(tool, f"tool_choice.allowed_tools.tools[{i}]")
        return
    if "name" not in inner:
        raise _missing(f"tool_choice.{kind}.name")
    _string(inner["name"], f"tool_choice.{kind}.name")


def _functions(value: object) -> None:
    """The deprecated `functions`: 1 to 128 function definitions."""
    for i, function in enumerate(_array(value, "functions", nonempty=True, max_items=128)):
        _function_definition(function, f"functions[{i}]")


def _function_choice(value: object) -> None:
    """The deprecated `function_call`: 'none', 'auto' or {"name": ...}."""
    if isinstance(value, str):
        _choice(value, "function_call", ("none", "auto"))
        return
    choice = _object(value, "function_call")
    if "name" not in choice:
        raise _missing("function_call.name")
    _string(choice["name"], "function_call.name")


def _response_format(value: object) -> None:
    response_format = _object(value, "response_format")
    if "type" not in response_format:
        raise _missing("response_format.type")
    kind = _choice(response_format["type"], "response_format.type", ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return
    if "json_schema" not in response_format:
        raise _missing("response_format.json_schema")
    schema = _object(response_format["json_schema"], "response_format.json_schema")
    if "name" not in schema:
        raise _missing("response_format.json_schema.name")
    _name(schema["name"], "response_format.json_schema.name")
    if schema.get("description") is not None:
        _string(schema["description"], "response_format.json_schema.description")
    if schema.get("schema") is not None:
        _object(schema["schema"], "response_format.json_schema.schema")
    if schema.get("strict") is not None:
        _boolean(schema["strict"], "response_format.json_schema.strict")


def _stop(value: object) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _bad_type("stop", "a string or an array of strings", value)
    if not 1 <= len(value) <= 4:
        raise _bad_value("stop", "a string or an array of 1 to 4 strings", value)
    for i, item in enumerate(value):
        _string(item, f"stop[{i}]")


def _logit_bias(value: object) -> None:
    for token, bias in _object(value, "logit_bias").items():
        if not isinstance(token, str) or not token.isascii() or not token.isdigit():
            raise ApiError(f"Invalid key in 'logit_bias': {json_shown(token)} is not a token ID.", param="logit_bias")
        if not _is_number(bias) or not -100 <= bias <= 100:
            raise _bad_value("logit_bias", f"a bias between -100 and 100 for token {token}", bias)


def _stream_options(value: object, stream: object) -> None:
    options = _object(value, "stream_options")
    if stream is not True:
        raise ApiError("The 'stream_options' parameter is only allowed when 'stream' is true.", param="stream_options")
    for key in ("include_usage", "include_obfuscation"):
        if options.get(key) is not None:
            _boolean(options[key], f"stream_options.{key}")


def _prediction(value: object) -> None:
    prediction = _object(value, "prediction")
    _choice(prediction.get("type"), "prediction.type", ("content",))
    if "content" not in prediction:
        raise _missing("prediction.content")
    content = prediction["content"]
    if not isinstance(content, str):
        if not isinstance(content, list):
            raise _bad_type("prediction.content", "a string or an array of text parts", content)
        _content_parts(content, "prediction.content", ("text",), "a prediction")


def _modalities(value: object) -> None:
    for i, item in enumerate(_array(value, "modalities")):
        _choice(item, f"modalities[{i}]", ("text", "audio"))


def _top_logprobs(value: object, logprobs: object) -> None:
    _integer(value, "top_logprobs", 0, 20)
    if logprobs is not True:
        raise ApiError("The 'top_logprobs' parameter is only allowed when 'logprobs' is true.", param="top_logprobs")


# Optional top-level fields the spec does not mark nullable: null is refused for these, passed for the rest.
NOT_NULLABLE = frozenset(
    {
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "functions",
        "function_call",
        "web_search_options",
        "prompt_cache_options",
    }
)
# One check per optional top-level field, called with (value, body).
FIELD_CHECKS: dict[str, Callable[[Any, dict[str, Any]], object]] = {
    "stream": lambda v, b: _boolean(v, "stream"),
    "stream_options": lambda v, b: _stream_options(v, b.get("stream")),
    "temperature": lambda v, b: _number(v, "temperature", 0, 2),
    "top_p": lambda v, b: _number(v, "top_p", 0, 1),
    "n": lambda v, b: _integer(v, "n", 1, 128),
    "stop": lambda v, b: _stop(v),
    "max_tokens": lambda v, b: _integer(v, "max_tokens", 1, INT32_MAX),
    "max_completion_tokens": lambda v, b: _integer(v, "max_completion_tokens", 1, INT32_MAX),
    "presence_penalty": lambda v, b: _number(v, "presence_penalty", -2, 2),
    "frequency_penalty": lambda v, b: _number(v, "frequency_penalty", -2, 2),
    "logit_bias": lambda v, b: _logit_bias(v),
    "logprobs": lambda v, b: _boolean(v, "logprobs"),
    "top_logprobs": lambda v, b: _top_logprobs(v, b.get("logprobs")),
    "user": lambda v, b: _string(v, "user"),
    "seed": lambda v, b: _integer(v, "seed", INT64_MIN, INT64_MAX),
    "tools": lambda v, b: _tools(v),
    "tool_choice": lambda v, b: _tool_choice(v),
    "parallel_tool_calls": lambda v, b: _boolean(v, "parallel_tool_calls"),
    "response_format": lambda v, b: _response_format(v),
    "functions": lambda v, b: _functions(v),
    "function_call": lambda v, b: _function_choice(v),
    "store": lambda v, b: _boolean(v, "store"),
    "metadata": lambda v, b: metadata_validate(v),
    "service_tier": lambda v, b: _string(v, "service_tier"),
    "reasoning_effort": lambda v, b: _string(v, "reasoning_effort"),
    "modalities": lambda v, b: _modalities(v),
    "audio": lambda v, b: _object(v, "audio"),
    "prediction": lambda v, b: _prediction(v),
    "web_search_options": lambda v, b: _object(v, "web_search_options"),
    "verbosity": lambda v, b: _choice(v, "verbosity", ("low", "medium", "high")),
    "safety_identifier": lambda v, b: _string(v, "safety_identifier"),
    "prompt_cache_key": lambda v, b: _string(v, "prompt_cache_key"),
    "prompt_cache_retention": lambda v, b: _choice(v, "prompt_cache_retention", ("in_memory", "24h")),
    "prompt_cache_options": lambda v, b: _object(v, "prompt_cache_options"),
    "moderation": lambda v, b: _object(v, "moderation"),
}
# Every top-level field of CreateChatCompletionRequest (openai 3.51's completion_create_params); others get a 400.
KNOWN_FIELDS = frozenset({"model", "messages", *FIELD_CHECKS})


def chat_request_validate(body: object) -> dict:
    """Check a POST /v1/chat/completions body against OpenAI's documented types and ranges.

    Returns it unchanged when valid; raises ApiError(400, param=<field path>) otherwise.
    """
    if not isinstance(body, dict):
        raise ApiError(f"The request body must be a JSON object, not {json_kind(body)}.")
    for field in body:
        if field not in KNOWN_FIELDS:
            raise ApiError(f"Unrecognized request argument supplied: {field}", param=str(field))

    model = body.get("model")
    if model is None:
        raise ApiError("You must provide a model parameter.", param="model")
    if not isinstance(model, str) or not model.strip():
        raise _bad_value("model", "a non-empty string naming a model", model)

    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _bad_type("messages", "an array of messages", messages)
    if not messages:
        raise ApiError("'messages' must contain at least one message.", param="messages", code="empty_array")
    for i, message in enumerate(messages):
        _message(message, f"messages[{i}]")

    for field, check in FIELD_CHECKS.items():
        if field not in body:
            continue
        value = body[field]
        if value is None:
            if field in NOT_NULLABLE:
                raise ApiError(f"Invalid type for '{field}': null is not allowed; leave it out instead.", param=field)
            continue
        check(value, body)
    return body

"""The check of a whole /v1 chat completion body: the table of every known top-level field with its
check, and ``chat_request_validate``, which walks it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conversations.core.metadata import json_kind
from conversations.gateway.api_error import ApiError
from conversations.gateway.validation.messages import message_check
from conversations.gateway.validation.options import (
    logit_bias_check,
    modalities_check,
    prediction_check,
    stop_check,
    stream_options_check,
    top_logprobs_check,
)
from conversations.gateway.validation.tools import (
    function_choice_check,
    functions_check,
    response_format_check,
    tool_choice_check,
    tools_check,
)
from conversations.gateway.validation.values import (
    bad_type,
    bad_value,
    boolean_check,
    choice_check,
    integer_check,
    metadata_validate,
    missing,
    number_check,
    object_check,
    string_check,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# OpenAI's bound on token counts ("Expected a value <= 2147483647"), also what PostgreSQL's integer holds.
INT32_MAX = 2**31 - 1


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
    "stream": lambda v, b: boolean_check(v, "stream"),
    "stream_options": lambda v, b: stream_options_check(v, b.get("stream")),
    "temperature": lambda v, b: number_check(v, "temperature", 0, 2),
    "top_p": lambda v, b: number_check(v, "top_p", 0, 1),
    "n": lambda v, b: integer_check(v, "n", 1, 128),
    "stop": lambda v, b: stop_check(v),
    "max_tokens": lambda v, b: integer_check(v, "max_tokens", 1, INT32_MAX),
    "max_completion_tokens": lambda v, b: integer_check(v, "max_completion_tokens", 1, INT32_MAX),
    "presence_penalty": lambda v, b: number_check(v, "presence_penalty", -2, 2),
    "frequency_penalty": lambda v, b: number_check(v, "frequency_penalty", -2, 2),
    "logit_bias": lambda v, b: logit_bias_check(v),
    "logprobs": lambda v, b: boolean_check(v, "logprobs"),
    "top_logprobs": lambda v, b: top_logprobs_check(v, b.get("logprobs")),
    "user": lambda v, b: string_check(v, "user"),
    "seed": lambda v, b: integer_check(v, "seed", INT64_MIN, INT64_MAX),
    "tools": lambda v, b: tools_check(v),
    "tool_choice": lambda v, b: tool_choice_check(v),
    "parallel_tool_calls": lambda v, b: boolean_check(v, "parallel_tool_calls"),
    "response_format": lambda v, b: response_format_check(v),
    "functions": lambda v, b: functions_check(v),
    "function_call": lambda v, b: function_choice_check(v),
    "store": lambda v, b: boolean_check(v, "store"),
    "metadata": lambda v, b: metadata_validate(v),
    "service_tier": lambda v, b: string_check(v, "service_tier"),
    "reasoning_effort": lambda v, b: string_check(v, "reasoning_effort"),
    "modalities": lambda v, b: modalities_check(v),
    "audio": lambda v, b: object_check(v, "audio"),
    "prediction": lambda v, b: prediction_check(v),
    "web_search_options": lambda v, b: object_check(v, "web_search_options"),
    "verbosity": lambda v, b: choice_check(v, "verbosity", ("low", "medium", "high")),
    "safety_identifier": lambda v, b: string_check(v, "safety_identifier"),
    "prompt_cache_key": lambda v, b: string_check(v, "prompt_cache_key"),
    "prompt_cache_retention": lambda v, b: choice_check(v, "prompt_cache_retention", ("in_memory", "24h")),
    "prompt_cache_options": lambda v, b: object_check(v, "prompt_cache_options"),
    "moderation": lambda v, b: object_check(v, "moderation"),
}
# Every top-level field of CreateChatCompletionRequest (openai 3.51's completion_create_params); others get a 400.
KNOWN_FIELDS = frozenset({"model", "messages", *FIELD_CHECKS})


def chat_request_validate(body: object) -> dict[str, Any]:
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
        raise bad_value("model", "a non-empty string naming a model", model)

    if "messages" not in body:
        raise missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise bad_type("messages", "an array of messages", messages)
    if not messages:
        raise ApiError("'messages' must contain at least one message.", param="messages", code="empty_array")
    for i, message in enumerate(messages):
        message_check(message, f"messages[{i}]")

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

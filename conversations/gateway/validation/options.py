"""Checks of the optional fields whose rules go past one type or range: ``stop``, ``logit_bias``,
``stream_options``, ``prediction``, ``modalities`` and ``top_logprobs``."""

from __future__ import annotations

from conversations.core.metadata import json_shown
from conversations.gateway.api_error import ApiError
from conversations.gateway.validation.messages import content_parts_check
from conversations.gateway.validation.values import (
    array_check,
    bad_type,
    bad_value,
    boolean_check,
    choice_check,
    integer_check,
    is_number,
    missing,
    object_check,
    string_check,
)


def stop_check(value: object) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise bad_type("stop", "a string or an array of strings", value)
    if not 1 <= len(value) <= 4:
        raise bad_value("stop", "a string or an array of 1 to 4 strings", value)
    for i, item in enumerate(value):
        string_check(item, f"stop[{i}]")


def logit_bias_check(value: object) -> None:
    for token, bias in object_check(value, "logit_bias").items():
        if not isinstance(token, str) or not token.isascii() or not token.isdigit():
            raise ApiError(f"Invalid key in 'logit_bias': {json_shown(token)} is not a token ID.", param="logit_bias")
        if not is_number(bias) or not -100 <= bias <= 100:
            raise bad_value("logit_bias", f"a bias between -100 and 100 for token {token}", bias)


def stream_options_check(value: object, stream: object) -> None:
    options = object_check(value, "stream_options")
    if stream is not True:
        raise ApiError("The 'stream_options' parameter is only allowed when 'stream' is true.", param="stream_options")
    for key in ("include_usage", "include_obfuscation"):
        if options.get(key) is not None:
            boolean_check(options[key], f"stream_options.{key}")


def prediction_check(value: object) -> None:
    prediction = object_check(value, "prediction")
    choice_check(prediction.get("type"), "prediction.type", ("content",))
    if "content" not in prediction:
        raise missing("prediction.content")
    content = prediction["content"]
    if not isinstance(content, str):
        if not isinstance(content, list):
            raise bad_type("prediction.content", "a string or an array of text parts", content)
        content_parts_check(content, "prediction.content", ("text",), "a prediction")


def modalities_check(value: object) -> None:
    for i, item in enumerate(array_check(value, "modalities")):
        choice_check(item, f"modalities[{i}]", ("text", "audio"))


def top_logprobs_check(value: object, logprobs: object) -> None:
    integer_check(value, "top_logprobs", 0, 20)
    if logprobs is not True:
        raise ApiError("The 'top_logprobs' parameter is only allowed when 'logprobs' is true.", param="top_logprobs")

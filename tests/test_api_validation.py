"""/v1 request checks: OpenAI's documented types and ranges answered as a clear 400 naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conversations.gateway.api_error import ApiError
from conversations.gateway.validation.request import chat_request_validate
from conversations.gateway.validation.values import metadata_validate

USER = {"role": "user", "content": "Hi"}
MINIMAL = {"model": "fake-model", "messages": [USER]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


VALIDATION_CODES = (
    None,
    "invalid_type",
    "invalid_value",
    "missing_required_parameter",
    "empty_array",
    "array_above_max_length",
)


def body(**fields: Any) -> dict[str, Any]:
    """The minimal request with `fields` added or replaced."""
    return {**copy.deepcopy(MINIMAL), **fields}


def with_message(message: Any) -> dict[str, Any]:
    """The minimal request with `message` appended as messages[1]."""
    return body(messages=[USER, message])


def rejected(request: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        chat_request_validate(request)
    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.body() == {
        "error": {"message": error.message, "type": "invalid_request_error", "param": error.param, "code": error.code}
    }
    assert error.code in VALIDATION_CODES  # OpenAI's code for the kind of mistake, where it sends one
    return error


def test_minimal_request_passes_unchanged():
    request = body()
    assert chat_request_validate(request) is request
    assert request == MINIMAL


def test_rich_request_passes_unchanged():
    request = {
        "model": "fake-model",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
            {
                "role": "user",
                "name": "ann",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
            {"role": "assistant", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21"}]},
            {"role": "assistant", "content": "Il fait 21 degrés."},
            {"role": "function", "name": "get_weather", "content": None},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "top_p": 1,
        "n": 2,
        "stop": ["\n\n", "END"],
        "max_completion_tokens": 256,
        "presence_penalty": -2,
        "frequency_penalty": 1.5,
        "logit_bias": {"50256": -100, "1734": 2.5},
        "logprobs": True,
        "top_logprobs": 20,
        "user": "user-1",
        "seed": -7,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "weather-report_1",
                "schema": {"type": "object", "properties": {"temp": {"type": "number"}}},
                "strict": True,
            },
        },
        "store": True,
        "metadata": {"source": "tests", "run": "1"},
        "service_tier": "auto",
        "reasoning_effort": "low",
        "verbosity": "low",
        "safety_identifier": "hash-123",
        "prompt_cache_key": "cache-1",
        "max_tokens": None,
    }
    snapshot = copy.deepcopy(request)
    assert chat_request_validate(request) is request
    assert request == snapshot


@pytest.mark.parametrize(
    "request_body",
    [
        body(tool_choice="auto"),
        body(tool_choice="none", tools=[WEATHER_TOOL]),
        body(tool_choice="required", tools=[WEATHER_TOOL]),
        body(response_format={"type": "text"}),
        body(response_format={"type": "json_object"}),
        body(response_format={"type": "json_schema", "json_schema": {"name": "x", "strict": None}}),
        body(stop=None),
        body(stop="END"),
        body(temperature=2, top_p=0.5, n=128, presence_penalty=2.0, frequency_penalty=-2),
        body(temperature=None, n=None, logprobs=None, metadata=None, stream_options=None),
        body(logprobs=False),
        body(logprobs=True, top_logprobs=0),
        body(max_tokens=1),
        body(stream=False),
        body(messages=[{"role": "assistant", "content": "Earlier reply."}, USER]),
        body(messages=[USER, {"role": "assistant", "audio": {"id": "audio_1"}}, USER]),
        body(functions=[{"name": "get_weather", "parameters": {}}], function_call={"name": "get_weather"}),
        body(
            tools=[{"type": "custom", "custom": {"name": "grep"}}],
            tool_choice={"type": "custom", "custom": {"name": "grep"}},
        ),
        body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [WEATHER_TOOL]}}),
        body(prediction={"type": "content", "content": "print('hi')"}, modalities=["text"]),
    ],
    ids=lambda b: ",".join(k for k in b if k not in MINIMAL) or "messages",
)
def test_other_valid_requests_pass(request_body):
    assert chat_request_validate(request_body) is request_body


INVALID: list[tuple[str, Any, str | None]] = [
    # The body itself.
    ("body is a list", [MINIMAL], None),
    ("body is a string", "hello", None),
    # model and messages.
    ("model missing", {"messages": [USER]}, "model"),
    ("model empty", body(model=""), "model"),
    ("model not a string", body(model=4), "model"),
    ("messages missing", {"model": "fake-model"}, "messages"),
    ("messages empty", body(messages=[]), "messages"),
    ("messages an object", body(messages=USER), "messages"),
    ("message not an object", body(messages=["Hi"]), "messages[0]"),
    ("role missing", body(messages=[{"content": "Hi"}]), "messages[0].role"),
    ("role unknown", with_message({"role": "bot", "content": "Hi"}), "messages[1].role"),
    ("user content missing", body(messages=[{"role": "user"}]), "messages[0].content"),
    ("user content null", body(messages=[{"role": "user", "content": None}]), "messages[0].content"),
    ("content a number", body(messages=[{"role": "user", "content": 42}]), "messages[0].content"),
    ("content empty array", body(messages=[{"role": "user", "content": []}]), "messages[0].content"),
    ("part not an object", body(messages=[{"role": "user", "content": ["Hi"]}]), "messages[0].content[0]"),
    (
        "part without type",
        body(messages=[{"role": "user", "content": [{"text": "Hi"}]}]),
        "messages[0].content[0].type",
    ),
    (
        "text part without text",
        body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        "messages[0].content[0].text",
    ),
    (
        "text part with non-string text",
        body(messages=[{"role": "user", "content": [{"type": "text", "text": ["Hi"]}]}]),
        "messages[0].content[0].text",
    ),
    (
        "image part in a system message",
        body(messages=[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "messages[0].content[0].type",
    ),
    (
        "image part without url",
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "messages[0].content[0].image_url.url",
    ),
    ("name not a string", body(messages=[{"role": "user", "content": "Hi", "name": 7}]), "messages[0].name"),
    ("assistant content null alone", with_message({"role": "assistant", "content": None}), "messages[1].content"),
    ("assistant without content", with_message({"role": "assistant"}), "messages[1].content"),
    (
        "assistant tool_calls empty",
        with_message({"role": "assistant", "content": None, "tool_calls": []}),
        "messages[1].tool_calls",
    ),
    (
        "assistant tool_calls an object",
        with_message({"role": "assistant", "tool_calls": TOOL_CALL}),
        "messages[1].tool_calls",
    ),
    (
        "tool call without id",
        with_message({"role": "assistant", "tool_calls": [{k: v for k, v in TOOL_CALL.items() if k != "id"}]}),
        "messages[1].tool_calls[0].id",
    ),
    (
        "tool call of unknown type",
        with_message({"role": "assistant", "tool_calls": [{**TOOL_CALL, "type": "func"}]}),
        "messages[1].tool_calls[0].type",
    ),
    (
        "tool call without function name",
        with_message({"role": "assistant", "tool_calls": [{**TOOL_CALL, "function": {"arguments": "{}"}}]}),
        "messages[1].tool_calls[0].function.name",
    ),
    (
        "tool call arguments as an object",
        with_message(
            {"role": "assistant", "tool_calls": [{**TOOL_CALL, "function": {"name": "f", "arguments": {"a": 1}}}]}
        ),
        "messages[1].tool_calls[0].function.arguments",
    ),
    ("tool message without tool_call_id", with_message({"role": "tool", "content": "21"}), "messages[1].tool_call_id"),
    (
        "tool message with numeric tool_call_id",
        with_message({"role": "tool", "content": "21", "tool_call_id": 1}),
        "messages[1].tool_call_id",
    ),
    ("function message without name", with_message({"role": "function", "content": "21"}), "messages[1].name"),
    # Sampling ranges and types; bool is not a number and 1.0 is not an integer.
    ("temperature above 2", body(temperature=3), "temperature"),
    ("temperature below 0", body(temperature=-0.1), "temperature"),
    ("temperature a string", body(temperature="0.5"), "temperature"),
    ("temperature true", body(temperature=True), "temperature"),
    ("temperature NaN", body(temperature=float("nan")), "temperature"),
    ("top_p above 1", body(top_p=1.5), "top_p"),
    ("n zero", body(n=0), "n"),
    ("n above 128", body(n=129), "n"),
    ("n as 1.0", body(n=1.0), "n"),
    ("n true", body(n=True), "n"),
    ("presence_penalty above 2", body(presence_penalty=2.5), "presence_penalty"),
    ("frequency_penalty below -2", body(frequency_penalty=-3), "frequency_penalty"),
    ("logit_bias a list", body(logit_bias=[1, 2]), "logit_bias"),
    ("logit_bias word key", body(logit_bias={"hello": 1}), "logit_bias"),
    ("logit_bias negative key", body(logit_bias={"-5": 1}), "logit_bias"),
    ("logit_bias value above 100", body(logit_bias={"50256": 101}), "logit_bias"),
    ("logit_bias value a string", body(logit_bias={"50256": "1"}), "logit_bias"),
    ("logit_bias value true", body(logit_bias={"50256": True}), "logit_bias"),
    ("stop empty list", body(stop=[]), "stop"),
    ("stop five strings", body(stop=["a", "b", "c", "d", "e"]), "stop"),
    ("stop a number", body(stop=7), "stop"),
    ("stop list with a number", body(stop=["a", 7]), "stop[1]"),
    ("max_tokens zero", body(max_tokens=0), "max_tokens"),
    ("max_tokens a float", body(max_tokens=10.5), "max_tokens"),
    ("max_completion_tokens negative", body(max_completion_tokens=-1), "max_completion_tokens"),
    ("max_completion_tokens a string", body(max_completion_tokens="100"), "max_completion_tokens"),
    ("logprobs a string", body(logprobs="yes"), "logprobs"),
    ("top_logprobs without logprobs", body(top_logprobs=5), "top_logprobs"),
    ("top_logprobs with logprobs false", body(logprobs=False, top_logprobs=5), "top_logprobs"),
    ("top_logprobs above 20", body(logprobs=True, top_logprobs=21), "top_logprobs"),
    ("seed a float", body(seed=1.5), "seed"),
    ("seed beyond int64", body(seed=2**63), "seed"),
    ("stream a string", body(stream="true"), "stream"),
    ("stream_options without stream", body(stream_options={"include_usage": True}), "stream_options"),
    ("stream_options with stream false", body(stream=False, stream_options={"include_usage": True}), "stream_options"),
    ("stream_options a bool", body(stream=True, stream_options=True), "stream_options"),
    (
        "include_usage a string",
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    ("user a number", body(user=42), "user"),
    ("user null", body(user=None), "user"),
    ("store a string", body(store="yes"), "store"),
    ("parallel_tool_calls a number", body(parallel_tool_calls=1), "parallel_tool_calls"),
    ("metadata a list", body(metadata=["a"]), "metadata"),
    ("metadata with a number value", body(metadata={"run": 1}), "metadata.run"),
    # Tools and tool_choice.
    ("tools an object", body(tools=WEATHER_TOOL), "tools"),
    ("tools null", body(tools=None), "tools"),
    ("tool not an object", body(tools=["get_weather"]), "tools[0]"),
    ("tool of unknown type", body(tools=[{**WEATHER_TOOL, "type": "retrieval"}]), "tools[0].type"),
    ("tool without function", body(tools=[{"type": "function"}]), "tools[0].function"),
    ("tool without name", body(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
    (
        "tool name with a space",
        body(tools=[{"type": "function", "function": {"name": "get weather"}}]),
        "tools[0].function.name",
    ),
    (
        "tool name 65 chars",
        body(tools=[{"type": "function", "function": {"name": "f" * 65}}]),
        "tools[0].function.name",
    ),
    (
        "tool description a list",
        body(tools=[{"type": "function", "function": {"name": "f", "description": ["x"]}}]),
        "tools[0].function.description",
    ),
    (
        "tool parameters a string",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
        "tools[0].function.parameters",
    ),
    ("too many tools", body(tools=[WEATHER_TOOL] * 129), "tools"),
    ("tool_choice unknown string", body(tool_choice="any"), "tool_choice"),
    ("tool_choice a number", body(tool_choice=1), "tool_choice"),
    ("tool_choice object without type", body(tool_choice={"function": {"name": "f"}}), "tool_choice.type"),
    (
        "tool_choice function without name",
        body(tool_choice={"type": "function", "function": {}}),
        "tool_choice.function.name",
    ),
    ("tool_choice without function", body(tool_choice={"type": "function"}), "tool_choice.function"),
    ("functions empty", body(functions=[]), "functions"),
    ("functions name invalid", body(functions=[{"name": "a.b"}]), "functions[0].name"),
    ("function_call unknown string", body(function_call="required"), "function_call"),
    # response_format.
    ("response_format a string", body(response_format="json"), "response_format"),
    ("response_format without type", body(response_format={}), "response_format.type"),
    ("response_format unknown type", body(response_format={"type": "yaml"}), "response_format.type"),
    ("json_schema missing", body(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (
        "json_schema without name",
        body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        "json_schema name with a slash",
        body(response_format={"type": "json_schema", "json_schema": {"name": "a/b"}}),
        "response_format.json_schema.name",
    ),
    (
        "json_schema schema a string",
        body(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": "{}"}}),
        "response_format.json_schema.schema",
    ),
    (
        "json_schema strict a string",
        body(response_format={"type": "json_schema", "json_schema": {"name": "a", "strict": "true"}}),
        "response_format.json_schema.strict",
    ),
    # Newer fields, type-checked.
    ("verbosity unknown", body(verbosity="loud"), "verbosity"),
    ("modalities a string", body(modalities="text"), "modalities"),
    ("modalities unknown item", body(modalities=["video"]), "modalities[0]"),
    ("reasoning_effort a number", body(reasoning_effort=3), "reasoning_effort"),
    ("prompt_cache_key a number", body(prompt_cache_key=3), "prompt_cache_key"),
]


@pytest.mark.parametrize(("request_body", "param"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_request_is_a_400_naming_the_field(request_body, param):
    assert rejected(request_body).param == param


@pytest.mark.parametrize("field", ["temprature", "max_token", "engine", "prompt"])
def test_unknown_field_is_rejected_like_openai(field):
    error = rejected(body(**{field: 1}))
    assert error.param == field
    assert error.message == f"Unrecognized request argument supplied: {field}"


def test_messages_read_like_openai():
    assert rejected(body(temperature=3)).message == (
        "Invalid value for 'temperature': expected a number between 0 and 2, got 3."
    )
    assert rejected(body(messages=[])).message == "'messages' must contain at least one message."
    assert rejected(body(n=True)).message == "Invalid type for 'n': expected an integer, but got a boolean."
    assert rejected({"model": "m"}).message == "Missing required parameter: 'messages'."


def test_api_error_defaults_and_headers():
    error = ApiError(
        "Slow down.", status=429, type="rate_limit_error", code="rate_limited", headers={"retry-after": "2"}
    )
    assert (error.status, error.headers, str(error)) == (429, {"retry-after": "2"}, "Slow down.")
    assert error.body() == {
        "error": {"message": "Slow down.", "type": "rate_limit_error", "param": None, "code": "rate_limited"}
    }


# metadata: 16 pairs, keys up to 64 characters, string values up to 512.


def test_metadata_at_the_limits_passes():
    pairs = {f"k{i}": "v" for i in range(15)} | {"k" * 64: "v" * 512}
    assert len(pairs) == 16
    assert metadata_validate(pairs) is pairs
    assert chat_request_validate(body(metadata=pairs))["metadata"] is pairs


def test_metadata_none_and_empty_pass():
    assert metadata_validate(None) is None
    assert metadata_validate({}) == {}


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"note": "v" * 513}, "metadata.note"),
        ({"count": 3}, "metadata.count"),
        ({"flag": None}, "metadata.flag"),
        ("tag=1", "metadata"),
    ],
    ids=["17 pairs", "65-char key", "513-char value", "number value", "null value", "a string"],
)
def test_metadata_over_the_limits_is_rejected(metadata, param):
    with pytest.raises(ApiError) as caught:
        metadata_validate(metadata)
    assert (caught.value.status, caught.value.type, caught.value.param) == (400, "invalid_request_error", param)
    assert rejected(body(metadata=metadata)).param == param


def test_metadata_param_names_the_caller_field():
    with pytest.raises(ApiError) as caught:
        metadata_validate({"k": 1}, param="body.metadata")
    assert caught.value.param == "body.metadata.k"

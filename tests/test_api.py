"""/v1 with the official openai SDK as the client, against a live chatweb and the loopback provider."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pydantic
import pytest
from django.utils import timezone

from conversations.accounts.api_keys import api_key_create, api_key_revoke
from conversations.models import ApiKey, ChatModel, UserLimits
from tests.upstream import Error, Hang, Raw, Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_key(user) -> str:
    return api_key_create(user=user, name="tests")[1]


@pytest.fixture
def client(live_server_url, api_key, chat_model) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=api_key, max_retries=0)


def test_create_non_streaming(client, upstream):
    upstream.script(Reply(text="Paris is the capital of France."))
    completion = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Capital of France?"}], temperature=0.2, seed=7
    )
    assert completion.choices[0].message.content == "Paris is the capital of France."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake-model"
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage.completion_tokens == 6
    sent = upstream.requests[-1]
    assert sent["model"] == "fake-upstream" and sent["temperature"] == 0.2 and sent["seed"] == 7


def test_create_streaming_with_usage(client, upstream):
    upstream.script(Reply(text="one two three"))
    stream = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].delta.role for c in chunks if c.choices].count("assistant") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


def test_usage_chunk_only_for_clients_that_ask(client, upstream):
    upstream.script(Reply(text="hello there"))
    chunks = list(
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert all(c.choices for c in chunks)
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}  # chatweb still counts


def test_stream_helper_accumulates_text(client, upstream):
    upstream.script(Reply(text="Streaming works fine"))
    with client.chat.completions.stream(model="fake-model", messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Streaming works fine"
    assert final.choices[0].message.role == "assistant"


def _tool_call_stream(repeat_fields: bool) -> Raw:
    """A provider stream with one tool call whose arguments arrive in pieces."""

    def event(delta: dict, finish: str | None = None) -> bytes:
        chunk = {
            "id": "up-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    head = {"id": "call_1", "type": "function", "function": {"name": "get_weather"}} if repeat_fields else {}
    parts = [event({"role": "assistant", "content": None})]
    for i, piece in enumerate(['{"city"', ': "Lis', 'bon"}']):
        call = {"index": 0, **(head if (i == 0 or repeat_fields) else {})}
        if i == 0:
            call.update({"id": "call_1", "type": "function", "function": {"name": "get_weather"}})
        call["function"] = {**call.get("function", {}), "arguments": piece}
        parts.append(event({"role": "assistant", "tool_calls": [call]} if repeat_fields else {"tool_calls": [call]}))
    parts.append(event({}, "tool_calls"))
    parts.append(b"data: [DONE]\n\n")
    return Raw(parts=parts)


@pytest.mark.parametrize("repeat_fields", [False, True], ids=["clean-provider", "provider-repeating-fields"])
def test_stream_helper_with_tool_calls_keeps_arguments_intact(client, upstream, repeat_fields):
    upstream.script(_tool_call_stream(repeat_fields))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with client.chat.completions.stream(
        model="fake-model", messages=[{"role": "user", "content": "Weather in Lisbon?"}], tools=tools
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.id == "call_1" and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].finish_reason == "tool_calls"
    assert upstream.requests[-1]["tools"] == tools


class Capital(pydantic.BaseModel):
    country: str
    capital: str


def test_parse_with_a_pydantic_model(client, upstream):
    upstream.script(Reply(text='{"country": "France", "capital": "Paris"}'))
    completion = client.chat.completions.parse(
        model="fake-model", messages=[{"role": "user", "content": "France?"}], response_format=Capital
    )
    assert completion.choices[0].message.parsed == Capital(country="France", capital="Paris")
    sent = upstream.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Capital"


def test_models_list_and_retrieve(client):
    assert [m.id for m in client.models.list()] == ["fake-model"]
    assert client.models.retrieve("fake-model").owned_by == "Fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_bad_and_revoked_keys_are_401(live_server_url, user, chat_model):
    bad = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key="sk-cw-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.code == "invalid_api_key"

    key, raw = api_key_create(user=user, name="soon revoked")
    api_key_revoke(user=user, key_id=key.pk)
    revoked = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        revoked.models.list()


def test_revoking_a_used_key_or_disabling_a_used_model_applies_to_the_next_call(client, user, upstream):
    upstream.script(Reply(text="one"))
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    ChatModel.objects.filter(name="fake-model").update(enabled=False)  # like another worker: no signal here
    chat_model = ChatModel.objects.get(name="fake-model")
    chat_model.save()  # an admin's save in this worker applies at once
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    api_key_revoke(user=user, key_id=ApiKey.objects.get(name="tests").pk)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_changes_made_by_another_worker_apply_within_the_cache_time(client, settings, upstream):
    settings.ROW_CACHE_SECONDS = 0.5
    upstream.script(*[Reply(text="ok")] * 15)
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    ChatModel.objects.filter(name="fake-model").update(enabled=False)  # no signal reaches this worker
    for _ in range(15):  # a model in constant use still leaves the cache in time
        time.sleep(0.1)
        try:
            client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
        except openai.NotFoundError:
            break
    else:
        pytest.fail("the disabled model was still served 1.5 s after the change")
    ApiKey.objects.filter(name="tests").update(revoked_at=timezone.now())
    time.sleep(0.6)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_api_answers_carry_security_headers_and_no_page_cookies(live_server_url, api_key, chat_model):
    response = httpx.get(f"{live_server_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"].startswith("req_")
    assert "set-cookie" not in response.headers


def test_key_use_is_recorded(client, api_key):
    client.models.list()
    assert ApiKey.objects.get(name="tests").last_used_at is not None


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"logit_bias": {"50256": 101}}, "logit_bias"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ],
)
def test_out_of_range_fields_are_400_naming_the_field(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"


def test_unknown_argument_and_unknown_model(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], extra_body={"bogus": 1}
        )
    assert "Unrecognized request argument supplied: bogus" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"


def test_malformed_bodies_and_oversized_requests(live_server_url, api_key, chat_model, settings):
    url = f"{live_server_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"}
    response = httpx.post(url, content=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-request-id"].startswith("req_")
    response = httpx.post(url, content=b"model=x", headers={**headers, "Content-Type": "text/plain"})
    assert response.status_code == 400
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = {"model": "fake-model", "messages": [{"role": "user", "content": "x" * 2000}]}
    response = httpx.post(url, json=big, headers=headers)
    assert response.status_code == 413 and "error" in response.json()


def test_upstream_errors_keep_their_status_and_shape(client, upstream):
    upstream.script(
        Error(
            status=400, message="context length exceeded", type="invalid_request_error", code="context_length_exceeded"
        )
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "context_length_exceeded"


def test_unreachable_provider_is_502(client, chat_model):
    chat_model.provider.base_url = "http://127.0.0.1:9/v1"
    chat_model.provider.save()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502


def test_error_mid_stream_reaches_the_sdk(client, upstream):
    upstream.script(Reply(text="a b c d", fail_after=2, error={"message": "boom", "type": "server_error"}))
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a b"
    assert "boom" in str(caught.value)


def test_sdk_retries_a_429_after_retry_after(live_server_url, api_key, chat_model, upstream, settings):
    settings.COMPLETIONS = {**settings.COMPLETIONS, "MAX_RETRIES": 0}
    upstream.script(Error(status=429, message="slow down", type="rate_limit_error", headers={"Retry-After": "1"}))
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=api_key, max_retries=2)
    completion = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "You said: hi"
    assert len(upstream.requests) == 2


def test_provider_timeout_is_504(client, upstream, settings):
    settings.COMPLETIONS = {**settings.COMPLETIONS, "READ_TIMEOUT": 0.3, "MAX_RETRIES": 0}
    upstream.script(Hang(seconds=1.0, then=Reply(text="too late")))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 504


def test_a_provider_429_tells_the_client_when_to_retry(live_server_url, api_key, chat_model, upstream, settings):
    settings.COMPLETIONS = {**settings.COMPLETIONS, "MAX_RETRIES": 0}
    upstream.script(Error(status=429, message="slow down", type="rate_limit_error"))
    response = httpx.post(
        f"{live_server_url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert response.json()["error"]["message"] == "slow down"


# Small things OpenAI's API does that clients read: rate-limit headers on success, `refusal` on stored
# messages, validation codes.

HI = [{"role": "user", "content": "Hi"}]


def test_a_user_with_limits_gets_rate_limit_headers_on_every_success(client, user, upstream):
    UserLimits.objects.create(user=user, requests_per_minute=5, tokens_per_minute=100_000)
    first = client.chat.completions.with_raw_response.create(model="fake-model", messages=HI, max_tokens=50)
    assert first.headers["x-ratelimit-limit-requests"] == "5" and first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert 100_000 - 50 - 10 < int(first.headers["x-ratelimit-remaining-tokens"]) <= 100_000 - 50
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    streamed = client.chat.completions.with_raw_response.create(model="fake-model", messages=HI, stream=True)
    assert streamed.headers["x-ratelimit-remaining-requests"] == "3"
    list(streamed.parse())


def test_a_user_without_limits_gets_no_rate_limit_headers(client, upstream):
    response = client.chat.completions.with_raw_response.create(model="fake-model", messages=HI)
    assert not [name for name in response.headers if name.startswith("x-ratelimit")]


def test_stored_messages_carry_refusal(client, live_server_url, api_key, upstream):
    messages = [*HI, {"role": "assistant", "content": "Sorry.", "refusal": "I can't help with that."}, *HI]
    completion_id = client.chat.completions.create(model="fake-model", messages=messages, store=True).id
    raw = httpx.get(
        f"{live_server_url}/v1/chat/completions/{completion_id}/messages",
        headers={"Authorization": f"Bearer {api_key}"},
    ).json()
    assert [m["refusal"] for m in raw["data"]] == [None, "I can't help with that.", None]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"messages": []}, "empty_array"),
        ({"temperature": "hot"}, "invalid_value"),
        ({"stream": "yes"}, "invalid_type"),
        ({"messages": [{"content": "no role"}]}, "missing_required_parameter"),
    ],
)
def test_validation_errors_carry_openais_code(client, fields, code):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**{"model": "fake-model", "messages": HI, **fields})
    assert caught.value.code == code

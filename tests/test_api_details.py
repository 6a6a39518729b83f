"""Small things OpenAI's API does that clients read: rate-limit headers on success, `refusal` on stored
messages, and validation codes."""

from __future__ import annotations

import httpx
import openai
import pytest

from conversations.models import UserLimits
from conversations.services.api_keys import api_key_create
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(user) -> str:
    return api_key_create(user=user, name="tests")[1]


@pytest.fixture
def client(live_server_url, key, chat_model) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=key, max_retries=0)


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


def test_stored_messages_carry_refusal(client, live_server_url, key, upstream):
    messages = [*HI, {"role": "assistant", "content": "Sorry.", "refusal": "I can't help with that."}, *HI]
    completion_id = client.chat.completions.create(model="fake-model", messages=messages, store=True).id
    raw = httpx.get(
        f"{live_server_url}/v1/chat/completions/{completion_id}/messages", headers={"Authorization": f"Bearer {key}"}
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

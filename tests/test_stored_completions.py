"""Stored completions (store: true) and OpenAI's API for them, with the official openai SDK as the client."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from conversations.accounts.api_keys import api_key_create
from conversations.models import ChatModel, StoredCompletion
from tests.test_api import _tool_call_stream
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(live_server_url, user, chat_model) -> openai.OpenAI:
    raw = api_key_create(user=user, name="tests")[1]
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw, max_retries=0)


@pytest.fixture
def other_client(live_server_url, other_user, chat_model) -> openai.OpenAI:
    raw = api_key_create(user=other_user, name="bob's")[1]
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw, max_retries=0)


def _store(client: openai.OpenAI, text: str = "hi", **kwargs) -> str:
    """Create a stored completion (the loopback provider echoes the text) and return its id."""
    kwargs.setdefault("model", "fake-model")
    return client.chat.completions.create(messages=[{"role": "user", "content": text}], store=True, **kwargs).id


def test_a_stored_completion_comes_back_as_the_client_saw_it(client, upstream):
    upstream.script(Reply(text="Paris is the capital of France."))
    created = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        temperature=0.2,
        store=True,
        metadata={"topic": "geography"},
    )
    stored = client.chat.completions.retrieve(created.id)
    assert stored.id == created.id
    assert stored.choices[0].message.content == "Paris is the capital of France."
    assert stored.usage == created.usage and stored.model == "fake-model"
    assert stored.metadata == {"topic": "geography"}
    assert "store" not in upstream.requests[-1] and "metadata" not in upstream.requests[-1]

    row = StoredCompletion.objects.get(pk=created.id)
    assert row.api_key.name == "tests" and row.provider == "Fake" and row.upstream_model == "fake-upstream"
    assert [m["role"] for m in row.messages] == ["system", "user"]
    assert row.request["temperature"] == 0.2 and "messages" not in row.request
    assert row.status == "completed" and row.completion_tokens == 6 and row.latency_ms is not None


def test_without_store_nothing_is_kept(client, upstream):
    created = client.chat.completions.create(model="fake-model", messages=HI, metadata={"topic": "x"})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(created.id)
    assert not StoredCompletion.objects.exists()


def test_a_stream_is_stored_whole_and_relayed_unchanged(client, upstream):
    upstream.script(Reply(text="one two three"))
    chunks = list(client.chat.completions.create(model="fake-model", messages=HI, stream=True, store=True))
    assert all(c.choices for c in chunks)  # no usage chunk: this client did not ask for one
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"

    stored = client.chat.completions.retrieve(chunks[0].id)
    assert stored.object == "chat.completion"
    assert stored.choices[0].message.content == "one two three"
    assert stored.choices[0].message.role == "assistant"
    assert stored.choices[0].finish_reason == "stop"
    assert stored.usage.completion_tokens == 3 and stored.usage.prompt_tokens == 1


def test_a_streamed_tool_call_is_stored_with_its_arguments_joined(client, upstream):
    upstream.script(_tool_call_stream(repeat_fields=True))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with client.chat.completions.stream(
        model="fake-model", messages=[{"role": "user", "content": "Weather in Lisbon?"}], tools=tools, store=True
    ) as stream:
        final = stream.get_final_completion()
    stored = client.chat.completions.retrieve(final.id)
    call = stored.choices[0].message.tool_calls[0]
    assert call.id == "call_1" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}
    assert stored.choices[0].finish_reason == "tool_calls" and stored.choices[0].message.content is None


def test_a_stream_that_fails_is_not_stored(client, upstream):
    upstream.script(Reply(text="a b c d", fail_after=2, error={"message": "boom", "type": "server_error"}))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="fake-model", messages=HI, stream=True, store=True))
    assert client.chat.completions.list().data == []


def test_listing_pages_through_everything_in_order(client, upstream):
    ids = [_store(client, f"question {i}") for i in range(7)]
    first = client.chat.completions.list(limit=3)
    assert [c.id for c in first.data] == ids[:3] and first.has_more
    assert first.data[0].choices[0].message.content == "You said: question 0"
    assert [c.id for c in client.chat.completions.list(limit=3)] == ids  # the SDK follows `after`
    assert [c.id for c in client.chat.completions.list(limit=3, order="desc")] == ids[::-1]
    last = client.chat.completions.list(after=ids[4], limit=3)
    assert [c.id for c in last.data] == ids[5:] and not last.has_more


def test_listing_filters_by_model_and_metadata(client, upstream, chat_model):
    ChatModel.objects.create(name="fake-model-2", provider=chat_model.provider, upstream_model="fake-upstream-2")
    x_en = _store(client, metadata={"topic": "x", "lang": "en"})
    y = _store(client, metadata={"topic": "y"})
    x_fr = _store(client, model="fake-model-2", metadata={"topic": "x", "lang": "fr"})

    assert [c.id for c in client.chat.completions.list(model="fake-model-2")] == [x_fr]
    assert [c.id for c in client.chat.completions.list(model="fake-model")] == [x_en, y]
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "x"})] == [x_en, x_fr]
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "x", "lang": "fr"})] == [x_fr]
    assert [c.id for c in client.chat.completions.list(metadata={"topic": "z"})] == []


def test_updating_metadata(client, upstream):
    completion_id = _store(client, metadata={"topic": "x"})
    updated = client.chat.completions.update(completion_id, metadata={"reviewed": "yes"})
    assert updated.metadata == {"reviewed": "yes"} and updated.id == completion_id
    assert client.chat.completions.retrieve(completion_id).metadata == {"reviewed": "yes"}
    assert client.chat.completions.update(completion_id, metadata=None).metadata == {}

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.update(completion_id, metadata={f"k{i}": "v" for i in range(17)})
    assert caught.value.param == "metadata"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.update(completion_id, metadata={}, extra_body={"bogus": 1})
    assert "Unrecognized request argument supplied: bogus" in caught.value.message
    assert client.chat.completions.retrieve(completion_id).metadata == {}


def test_deleting(client, upstream):
    completion_id = _store(client)
    deleted = client.chat.completions.delete(completion_id)
    assert deleted.deleted and deleted.id == completion_id and deleted.object == "chat.completion.deleted"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(completion_id)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete(completion_id)


def test_listing_the_input_messages(client, upstream):
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "name": "ana",
            "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "this?"}],
        },
        {"role": "assistant", "content": "A test."},
        {"role": "user", "content": "Thanks"},
    ]
    completion_id = client.chat.completions.create(model="fake-model", messages=messages, store=True).id

    page = client.chat.completions.messages.list(completion_id, limit=2)
    assert page.has_more and [m.id for m in page.data] == [f"{completion_id}-0", f"{completion_id}-1"]
    listed = list(client.chat.completions.messages.list(completion_id, limit=2))
    assert [m.content for m in listed] == ["Be brief.", "What is this?", "A test.", "Thanks"]
    assert [m.role for m in listed] == ["system", "user", "assistant", "user"]
    assert listed[0].content_parts is None and listed[0].name is None
    assert listed[1].name == "ana" and [p.text for p in listed[1].content_parts] == ["What is ", "this?"]
    desc = client.chat.completions.messages.list(completion_id, order="desc")
    assert [m.id for m in desc.data] == [f"{completion_id}-{i}" for i in (3, 2, 1, 0)]


def test_another_users_completions_are_not_found(client, other_client, upstream):
    completion_id = _store(client)
    for call in (
        lambda: other_client.chat.completions.retrieve(completion_id),
        lambda: other_client.chat.completions.update(completion_id, metadata={"a": "b"}),
        lambda: other_client.chat.completions.delete(completion_id),
        lambda: other_client.chat.completions.messages.list(completion_id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert other_client.chat.completions.list().data == []
    with pytest.raises(openai.BadRequestError) as caught:
        other_client.chat.completions.list(after=completion_id)
    assert caught.value.param == "after"
    assert client.chat.completions.retrieve(completion_id).metadata == {}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "chatcmpl-unknown"}, "after"),
    ],
)
def test_bad_list_parameters_are_400_naming_them(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.list(**kwargs)
    assert caught.value.param == param


def test_the_collection_url_still_guards_its_methods(live_server_url, chat_model):
    url = f"{live_server_url}/v1/chat/completions"
    assert httpx.get(url).status_code == 401
    assert httpx.put(url, headers={"Authorization": "Bearer sk-cw-x"}).status_code == 405


async def test_chat_ui_turns_are_kept_for_the_admin_but_not_listed_in_the_api(user, chat_model, client, open_tab):
    from conversations.models import Conversation, StoredCompletion

    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="from the chat page")
    await tab.receive_until('class="message assistant" data-status="complete"')

    assert await StoredCompletion.objects.filter(user=user, source="chat").acount() == 1
    assert list(client.chat.completions.list()) == []

"""Crafted and careless input answered with a clear 4xx (OpenAI-shaped on /v1) or a notice on the chat socket:
never a 500, a socket closed 1011, or a half-written row."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import sync_to_async

from conversations.accounts.api_keys import api_key_create
from conversations.models import ApiKey, Conversation, Message, ModelPrice, StoredCompletion, UsageRecord, UserLimits
from tests.conftest import eventually, path_append
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
HUGE = "99999999999999999999999"


@pytest.fixture
def api(live_server_url, user, chat_model) -> httpx.Client:
    raw = api_key_create(user=user, name="tests")[1]
    with httpx.Client(base_url=f"{live_server_url}/v1", headers={"Authorization": f"Bearer {raw}"}, timeout=10) as c:
        yield c


def post_raw(api: httpx.Client, url: str, body: str) -> httpx.Response:
    return api.post(url, content=body.encode(), headers={"Content-Type": "application/json"})


def openai_error(response: httpx.Response, status: int = 400) -> dict:
    """The error of an answer that must have OpenAI's shape and ``status``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- /v1: bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [990, 5000])
def test_deeply_nested_json_is_a_400_wherever_it_is(api, upstream, depth):
    chat = '{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]'
    tools = chat + ', "tools": [{"type": "function", "function": {"name": "f", "parameters": {"x": %s}}}]}'
    stored = api.post("/chat/completions", json={"model": "fake-model", "messages": HI, "store": True}).json()["id"]

    for url, body in [
        ("/chat/completions", nested(depth)),
        ("/chat/completions", tools % nested(depth)),
        (f"/chat/completions/{stored}", '{"metadata": {"a": %s}}' % nested(depth)),
    ]:
        error = openai_error(post_raw(api, url, body))
        assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]
    assert len(upstream.requests) == 1  # only the stored one reached the provider
    assert StoredCompletion.objects.get().metadata == {}


@pytest.mark.parametrize("field", ["content", "model", "user"])
def test_a_lone_surrogate_is_a_400_and_reaches_neither_provider_nor_database(api, upstream, field):
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "store": True, "user": "ann"}
    if field == "content":
        body["messages"][0]["content"] = "\ud800"
    else:
        body[field] = "x\udfff"
    error = openai_error(post_raw(api, "/chat/completions", json.dumps(body)))  # json.dumps escapes it: \ud800
    assert error["code"] == "invalid_json" and "surrogate" in error["message"]
    assert upstream.requests == [] and not StoredCompletion.objects.exists() and not UsageRecord.objects.exists()


@pytest.mark.parametrize(
    "raw", ["[NaN]", '{"model": "fake-model", "messages": [], "temperature": Infinity}', "[1e999]"]
)
def test_non_finite_numbers_are_a_400(api, raw):
    assert openai_error(post_raw(api, "/chat/completions", raw))["code"] == "invalid_json"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_token_limits_above_what_openai_accepts_are_a_400(api, user, chat_model, upstream, field):
    UserLimits.objects.create(user=user, monthly_budget=Decimal("100"))  # 10**19 overflowed the reservation
    ModelPrice.objects.create(model="fake-model", input_per_million=1, cached_input_per_million=0, output_per_million=2)
    for value in (10**19, 10**30, 2**31):
        error = openai_error(api.post("/chat/completions", json={"model": "fake-model", "messages": HI, field: value}))
        assert error["param"] == field and "2147483647" in error["message"]
    assert upstream.requests == [] and not UsageRecord.objects.exists()


def test_a_worst_case_beyond_what_a_ledger_row_holds_is_reserved_as_its_largest(api, user, upstream):
    """max_tokens at OpenAI's bound times n=128, priced: more tokens and dollars than PostgreSQL's integer and
    numeric(14, 8) columns hold, which failed the call with a 500 there."""
    UserLimits.objects.create(user=user, requests_per_minute=100)  # the reservation is written before the call
    ModelPrice.objects.create(
        model="fake-model", input_per_million=1, cached_input_per_million=0, output_per_million=1000
    )
    upstream.script(Reply(text="fine"))
    response = api.post(
        "/chat/completions", json={"model": "fake-model", "messages": HI, "max_tokens": 2**31 - 1, "n": 128}
    )
    assert response.status_code == 200, response.text
    settled = eventually(lambda: UsageRecord.objects.filter(state="settled").first())
    assert settled.completion_tokens == 1  # settled to what was used


def test_n_choices_without_max_tokens_reserve_n_default_replies(api, user, upstream, settings):
    settings.USAGE_RESERVE_OUTPUT_TOKENS = 100
    UserLimits.objects.create(user=user, tokens_per_minute=300)
    upstream.script(Reply(text="one"))
    assert api.post("/chat/completions", json={"model": "fake-model", "messages": HI, "n": 2}).status_code == 200
    error = openai_error(api.post("/chat/completions", json={"model": "fake-model", "messages": HI, "n": 4}), 429)
    assert error["code"] == "rate_limit_exceeded"  # 4 x 100 reserved tokens do not fit in 300
    assert len(upstream.requests) == 1


# --- /v1: stored completions --------------------------------------------------------------


def test_integer_looking_metadata_keys_are_keys(api, upstream):
    """SQLite read "-1" in a JSON path as an array index: OperationalError, a 500."""
    ids = {}
    for key in ("-1", "1", 'quo"te'):
        body = {"model": "fake-model", "messages": HI, "store": True, "metadata": {key: "x"}}
        ids[key] = api.post("/chat/completions", json=body).json()["id"]
    for key, completion_id in ids.items():
        listed = api.get("/chat/completions", params={f"metadata[{key}]": "x"})
        assert listed.status_code == 200 and [c["id"] for c in listed.json()["data"]] == [completion_id]
    assert api.get("/chat/completions", params={"metadata[-1]": "y"}).json()["data"] == []


def test_odd_ids_and_nul_in_queries_are_4xx(api):
    for path in ("/chat/completions/%00", f"/chat/completions/{'x' * 300}", "/chat/completions/a%C2%B2/messages"):
        assert openai_error(api.get(path), 404)["type"] == "invalid_request_error"
    assert openai_error(api.delete("/chat/completions/%00"), 404)
    for params in ({"model": "\x00"}, {"after": "\x00"}, {"metadata[k]": "\x00"}, {"limit": "²"}):
        assert openai_error(api.get("/chat/completions", params=params), 400)


# --- Pages --------------------------------------------------------------------------------


def test_odd_ids_in_page_urls_are_4xx(client, user, chat_model):
    conversation = Conversation.objects.create(user=user, model=chat_model)
    client.force_login(user)
    for before in ("%C2%B2", HUGE, "-1"):
        assert client.get(f"/c/{conversation.pk}/messages?before={before}").status_code == 400
    assert client.get(f"/c/{HUGE}/").status_code == 404
    assert client.post(f"/c/{HUGE}/rename", {"title": "x"}).status_code == 404
    assert client.post(f"/account/keys/{HUGE}/revoke").status_code == 404
    assert ApiKey.objects.count() == 0
    for url, data in [("/c/new", {"message": "a\x00b"}), (f"/c/{conversation.pk}/rename", {"title": "a\x00b"})]:
        assert client.post(url, data).status_code == 400  # PostgreSQL's text columns refuse U+0000
    assert not Message.objects.exists() and Conversation.objects.get().title == "New chat"


def test_admin_stored_completion_filters_take_any_text(admin_client, user, chat_model):
    StoredCompletion.objects.create(
        id="chatcmpl-a", user=user, model="fake-model", messages=HI, response={}, metadata={"-1": "x"}
    )
    url = "/admin/conversations/storedcompletion/"
    for query in ("user=%C2%B2", f"user={HUGE}", "user=-1"):
        assert admin_client.get(f"{url}?{query}").status_code == 200
    for query in ("user=%00x", "q=%00", "model=%00", "status=%00", "meta_key=%00"):  # no text column takes U+0000
        assert admin_client.get(f"{url}?{query}").status_code == 400
    page = admin_client.get(f"{url}?meta_key=-1&meta_value=x")
    assert page.status_code == 200 and "chatcmpl-a" in page.content.decode()


# --- The chat socket ----------------------------------------------------------------------


async def test_unreadable_frames_get_a_notice_and_the_socket_stays_open(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    for frame in ("not json", nested(5000), nested(200), '{"message": "\\ud800"}', '{"message": "a\\u0000b"}'):
        await tab.communicator.send_to(text_data=frame)
        assert "could not be read" in await tab.receive_until('id="composer-notice"')
    await tab.communicator.send_to(bytes_data=b'{"message": "hi"}')
    assert "could not be read" in await tab.receive_until('id="composer-notice"')
    assert not await Message.objects.filter(conversation=conversation).aexists()

    upstream.script(Reply(text="still here"))
    await tab.send(message="hello")  # the same socket still works
    assert "still here" in await tab.receive_until('class="message assistant" data-status="complete"')


async def test_streaming_names_only_replies(user, chat_model, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    mine, reply = await sync_to_async(path_append)(
        conversation,
        {"role": "user", "content": "my secret question"},
        {"role": "assistant", "content": "Done."},
    )
    connected, _, tab = await open_tab(user, conversation.pk, query=f"streaming={HUGE},x,{mine.pk},{reply.pk}")
    assert connected
    html = await tab.receive_until(f'id="message-{reply.pk}"')
    assert "my secret question" not in html
    assert await tab.communicator.receive_nothing(timeout=0.3)


@pytest.mark.parametrize("action", [{"message": "hello"}, {"action": "regenerate"}, {"action": "stop"}])
async def test_acting_on_a_conversation_deleted_meanwhile_closes_with_a_code_the_page_explains(
    user, chat_model, open_tab, action
):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await conversation.adelete()
    await tab.send(**action)
    output = await tab.communicator.receive_output(timeout=5)
    if action.get("action") == "stop":  # nothing to stop: answered as usual
        assert output["type"] == "websocket.send" and 'id="composer-notice"' in output["text"]
    else:
        assert output == {"type": "websocket.close", "code": 4404}  # "not available. Reload the page."
    assert not await Message.objects.aexists()

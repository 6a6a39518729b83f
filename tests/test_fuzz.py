"""Property-based fuzzing of /v1/chat/completions, the stored-completions routes and the chat socket.

Requests and frames are drawn from the request schema (valid ones, which reach the loopback
provider) and then made hostile at a random path: deep nesting, lone surrogates, U+0000,
huge integers, NaN and infinities, wrong types, unknown fields. Whatever arrives, no answer
is a 5xx, every 4xx has OpenAI's error shape, the socket never closes with 1011, and no row
is left half-written (every usage record settles, every stored completion has its record,
no reply stays streaming).

``FUZZ_EXAMPLES`` sets the examples per test: a few in ``make test``, many in ``make fuzz``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import urllib.parse
from decimal import Decimal
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.accounts.api_keys import api_key_create
from conversations.core.errors import InvalidInput
from conversations.library.imports.checks import import_file_check
from conversations.library.imports.run import import_run_create, import_run_process
from conversations.models import (
    Conversation,
    ImportRun,
    Message,
    ModelPrice,
    StoredCompletion,
    UsageRecord,
    UserLimits,
)
from tests.conftest import eventually, signed_in_session, socket_app

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Deep:
    """Nesting ``depth`` levels deep, written into the JSON text as it is (json.dumps would recurse)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


# --- Values -------------------------------------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "²", "١", "-1", "1e400", "99999999999999999999999", " 7", "%00"]),
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4),
)
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**19, 10**30, -(2**63) - 1, 2**31, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
    st.builds(Deep, st.sampled_from([99, 101, 990, 5000])),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(nasty_text, st.integers(), max_size=3),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


def dumps(value: Any, ascii: bool = True) -> str:
    """JSON text of ``value`` with NaN/Infinity as JavaScript writes them, Deep spelled out, and surrogates
    escaped (``ascii``) or raw (sent UTF-8-encoded, which is not valid UTF-8)."""
    deep: list[Deep] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Deep):
            deep.append(item)
            return f"__deep_{len(deep) - 1}__"
        if isinstance(item, dict):
            return {key: mark(v) for key, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value), default=str, ensure_ascii=ascii)
    for i, item in enumerate(deep):
        text = text.replace(f'"__deep_{i}__"', "[" * item.depth + "]" * item.depth)
    return text


# --- Requests -----------------------------------------------------------------------------------

text_part = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)})
user_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "system", "developer"]),
        "content": st.text(min_size=1, max_size=30) | st.lists(text_part, min_size=1, max_size=2),
    }
)
assistant_message = st.fixed_dictionaries({"role": st.just("assistant"), "content": st.text(max_size=20)})
tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True)},
            optional={
                "description": st.text(max_size=20),
                "parameters": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
            },
        ),
    }
)
OPTIONAL_FIELDS = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "n": st.integers(1, 3),
    "max_tokens": st.integers(1, 2**31 - 1),
    "max_completion_tokens": st.integers(1, 64),
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), min_size=1, max_size=4),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "logit_bias": st.dictionaries(st.from_regex(r"[0-9]{1,6}", fullmatch=True), st.integers(-100, 100), max_size=2),
    "user": st.text(max_size=20),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "tools": st.lists(tool, max_size=2),
    "tool_choice": st.sampled_from(["none", "auto", "required"]),
    "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
    "store": st.booleans(),
    "metadata": st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
    "stream": st.booleans(),
    "logprobs": st.booleans(),
}
valid_body = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["fake-model", "fake-model", "no-such-model"]),
        "messages": st.lists(st.one_of(user_message, assistant_message), min_size=1, max_size=3),
    },
    optional=OPTIONAL_FIELDS,
)


def paths(value: Any, at: tuple = ()) -> list[tuple]:
    """Every path into ``value``'s objects and arrays, the root included."""
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*at, index))
    return found


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(copy[head], rest, new)
    return copy


@st.composite
def hostile_body(draw: st.DrawFn) -> str:
    """A valid body, then one to three of its values (or the whole) replaced by hostile ones, maybe a field added."""
    body: Any = draw(valid_body)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths(body)))
        body = replaced(body, path, draw(hostile))
    if isinstance(body, dict) and draw(st.booleans()):
        body[draw(st.sampled_from(["bogus", *OPTIONAL_FIELDS, "messages", "model"]))] = draw(hostile)
    return dumps(body, ascii=draw(st.booleans()))


def report(name: str, cases: list[int]) -> None:
    """Print how many cases ran (``make fuzz`` shows it)."""
    print(f"\nfuzz {name}: {len(cases)} cases, none answered 5xx or closed 1011")


def assert_answer(response: httpx.Response) -> None:
    """Never a 5xx; a 4xx in OpenAI's error shape; a stream read to its end."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
        assert error["param"] is None or isinstance(error["param"], str)


def assert_no_half_written_rows() -> None:
    eventually(lambda: not UsageRecord.objects.filter(state="reserved").exists(), timeout=20)
    assert not StoredCompletion.objects.filter(source="api", usage__isnull=True).exists()
    eventually(lambda: not Message.objects.filter(status="streaming").exists(), timeout=20)


@pytest.fixture
def api(live_server_url, user, chat_model) -> httpx.Client:
    """A key's client, for a user with limits (reservations are written first) on a priced model."""
    UserLimits.objects.create(user=user, monthly_budget=Decimal("500000"), requests_per_minute=10**6)
    ModelPrice.objects.create(
        model="fake-model", input_per_million=1, cached_input_per_million=0, output_per_million=300
    )
    raw = api_key_create(user=user, name="fuzz")[1]
    with httpx.Client(base_url=f"{live_server_url}/v1", headers={"Authorization": f"Bearer {raw}"}, timeout=30) as c:
        yield c


def post(api: httpx.Client, url: str, text: str) -> httpx.Response:
    with api.stream("POST", url, content=text.encode("utf-8", "surrogatepass"),
                    headers={"Content-Type": "application/json"}) as response:  # fmt: skip
        response.read()
    return response


# --- The properties ------------------------------------------------------------------------------


def test_create_never_fails_on_any_body(api):
    cases: list[int] = []

    @FUZZ
    @given(body=hostile_body())
    def check(body: str) -> None:
        cases.append(1)
        assert_answer(post(api, "/chat/completions", body))

    check()
    report("POST /v1/chat/completions", cases)
    assert_no_half_written_rows()


segment = st.one_of(
    st.just("KNOWN"),
    st.from_regex(r"chatcmpl-[0-9a-f]{1,30}", fullmatch=True),
    st.binary(min_size=1, max_size=20).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
    st.sampled_from(["%00", "%C2%B2", "%ED%A0%80", "9" * 30, "x" * 300]),
)
query_key = st.sampled_from(["after", "limit", "order", "model", "metadata[topic]", "metadata[-1]", "metadata[1]", "x"])
query_value = st.one_of(
    st.sampled_from(["KNOWN", "asc", "desc", "20", "0", "101", "²", "-1", "9" * 30, "x", ""]),
    st.binary(max_size=12).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
)
query = st.lists(st.tuples(query_key, query_value), max_size=4).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)
update_body = st.one_of(
    st.fixed_dictionaries({"metadata": st.dictionaries(st.text(max_size=70), st.text(max_size=8), max_size=17)}),
    st.fixed_dictionaries({"metadata": hostile}),
    hostile,
    st.dictionaries(st.text(max_size=8), hostile, max_size=2),
).map(dumps)


def test_stored_completion_routes_never_fail(api):
    known = [
        api.post("/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": f"{i}"}],
                                            "store": True, "metadata": {"topic": f"t{i}", "-1": "x"}}).json()["id"]
        for i in range(3)
    ]  # fmt: skip
    cases: list[int] = []

    @FUZZ
    @given(
        method=st.sampled_from(["GET list", "GET", "POST", "DELETE", "GET messages"]),
        completion_id=segment, params=query, body=update_body, which=st.integers(0, 2),
    )  # fmt: skip
    def check(method: str, completion_id: str, params: str, body: str, which: int) -> None:
        cases.append(1)
        completion_id = completion_id.replace("KNOWN", known[which])
        params = params.replace("KNOWN", known[which])
        if method == "GET list":
            response = api.get(f"/chat/completions?{params}")
        elif method == "GET messages":
            response = api.get(f"/chat/completions/{completion_id}/messages?{params}")
        elif method == "POST":
            response = post(api, f"/chat/completions/{completion_id}", body)
        else:
            response = api.request(method, f"/chat/completions/{completion_id}")
        assert_answer(response)

    check()
    report("stored-completions routes", cases)
    assert_no_half_written_rows()


frames = st.one_of(
    hostile_body(),  # any JSON, the request schema's included
    st.fixed_dictionaries(
        {"message": st.one_of(st.text(max_size=30), hostile)},
        optional={
            "action": st.one_of(
                st.sampled_from(["send", "stop", "regenerate", "edit", "switch", "continue", "delete"]), hostile
            ),
            "model": hostile,
            "message_id": st.one_of(st.integers(min_value=-2, max_value=2**70), hostile),
        },
    ).map(dumps),
    st.builds(Deep, st.sampled_from([101, 990, 5000])).map(dumps),
    st.text(max_size=30),
    st.binary(max_size=30),
)


def test_the_chat_socket_never_fails_on_any_frame(user, chat_model, upstream):
    conversation = Conversation.objects.create(user=user, model=chat_model)
    session = signed_in_session(user)

    async def exchange(frame: str | bytes) -> None:
        communicator = WebsocketCommunicator(socket_app(), f"/ws/c/{conversation.pk}/")
        communicator.scope.update(user=user, session=session)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        if isinstance(frame, bytes):
            await communicator.send_input({"type": "websocket.receive", "bytes": frame})
        else:  # a text frame is UTF-8: a raw surrogate cannot be in one
            await communicator.send_input(
                {"type": "websocket.receive", "text": frame.encode("utf-8", "replace").decode()}
            )
        while True:  # every action is answered with the composer's notice, after any other partials
            output = await communicator.receive_output(timeout=10)
            assert output["type"] == "websocket.send", output  # a close here (1011) is the failure
            if 'id="composer-notice"' in output.get("text", ""):
                break
        await communicator.disconnect()
        await asyncio.sleep(0)

    cases: list[int] = []

    @FUZZ
    @given(frame=frames)
    def check(frame: str | bytes) -> None:
        cases.append(1)
        async_to_sync(exchange)(frame)

    check()
    report("chat socket frames (no close 1011)", cases)
    assert_no_half_written_rows()


# --- Imports ------------------------------------------------------------------------------------

conversation_like = st.fixed_dictionaries(
    {"title": nasty_text, "mapping": st.dictionaries(nasty_text, json_values | hostile, max_size=3)},
    optional={
        "create_time": hostile,
        "current_node": hostile,
        "chatweb": st.just(1),
        "messages": st.lists(hostile, max_size=3),
    },
)
import_files = st.one_of(
    st.lists(conversation_like | json_values | hostile, max_size=3).map(dumps),
    st.lists(conversation_like, min_size=1, max_size=2).map(lambda entries: dumps(entries, ascii=False)),
    st.builds(Deep, st.sampled_from([99, 101, 990, 5000])).map(lambda deep: "[" + dumps(deep) + "]"),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def test_an_import_never_fails_on_any_file(user):
    """Whatever the file, the import refuses it with a sentence or runs to an end: never another error."""
    cases: list[int] = []

    @FUZZ
    @given(payload=import_files)
    def check(payload: str | bytes) -> None:
        cases.append(1)
        data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
        upload = io.BytesIO(data)
        try:
            sha256, total = import_file_check(upload=upload, size=len(data))
        except InvalidInput as exc:
            assert exc.message
            return
        run, _ = import_run_create(user=user, filename="fuzz.json", sha256=sha256, total=total)
        run = import_run_process(run=run, source=upload)
        assert run.status in (ImportRun.Status.DONE, ImportRun.Status.FAILED)

    check()
    report("import files (refused in a sentence or imported)", cases)

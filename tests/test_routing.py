"""One model, several deployments: fallback before content, cooldowns, and 503 when all fail.

Three real loopback providers stand behind one model; the client is the official
``openai`` SDK on /v1, or a chat tab.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import openai
import pytest
from asgiref.sync import sync_to_async

from conversations.accounts.api_keys import api_key_create
from conversations.models import (
    ChatModel,
    Conversation,
    Deployment,
    Message,
    ModelAlias,
    Provider,
    StoredCompletion,
    UsageRecord,
)
from conversations.providers.completions import Upstream
from conversations.providers.routes import Route, routes_ordered, routing_state_reset
from tests.conftest import eventually, wait_for_status
from tests.live import free_port
from tests.test_workers import needs_services, workers  # noqa: F401 - the workers fixture
from tests.upstream import Error, FakeUpstream, Hang, Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def spares() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    servers = (FakeUpstream().start(), FakeUpstream().start())
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def second(spares, upstream) -> FakeUpstream:
    spares[0].reset()
    return spares[0]


@pytest.fixture
def third(spares) -> FakeUpstream:
    spares[1].reset()
    return spares[1]


@pytest.fixture(autouse=True)
def _fresh_routing_state() -> Iterator[None]:
    routing_state_reset()
    yield
    routing_state_reset()


@pytest.fixture
def routed(db, upstream, second, third) -> ChatModel:
    """``fake-model``: the first provider, then ``Second``, then ``Third``; ``default`` is another name for it."""
    first = Provider.objects.create(name="First", base_url=upstream.base_url, api_key="sk-first")
    model = ChatModel.objects.create(name="fake-model", provider=first, upstream_model="first-id", is_default=True)
    for priority, (name, server) in enumerate([("Second", second), ("Third", third)], start=1):
        provider = Provider.objects.create(name=name, base_url=server.base_url, api_key=f"sk-{name.lower()}")
        Deployment.objects.create(
            model=model, provider=provider, upstream_model=f"{name.lower()}-id", priority=priority
        )
    ModelAlias.objects.create(name="default", model=model)
    return model


@pytest.fixture
def first_down(routed) -> None:
    Provider.objects.filter(name="First").update(base_url=f"http://127.0.0.1:{free_port()}/v1")


@pytest.fixture
def client(live_server_url, user, routed) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server_url}/v1", api_key=api_key_create(user=user, name="t")[1], max_retries=0
    )


def ask(client: openai.OpenAI, **extra) -> str:
    completion = client.chat.completions.create(
        model=extra.pop("model", "fake-model"), messages=[{"role": "user", "content": "Hi"}], **extra
    )
    return completion.choices[0].message.content


def streamed(client: openai.OpenAI) -> str:
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_first_down_the_second_answers_and_is_recorded(client, first_down, second, user):
    second.script(Reply(text="from second"))
    assert ask(client, store=True) == "from second"
    assert second.requests[-1]["model"] == "second-id"
    stored = eventually(lambda: StoredCompletion.objects.filter(user=user).first())
    assert stored.provider == "Second" and stored.upstream_model == "second-id"
    (attempt,) = stored.attempts
    assert attempt["deployment"] == "First / first-id" and attempt["status"] == 502 and attempt["at"]
    record = eventually(lambda: UsageRecord.objects.filter(user=user, state="settled").first())
    assert record.provider == "Second" and record.upstream_model == "second-id" and record.model == "fake-model"


@pytest.mark.parametrize("failure", [Error(status=429, type="rate_limit_error"), Error(status=500)])
def test_first_429_or_500_falls_back_without_retrying_it(client, upstream, second, failure):
    upstream.script(failure)
    second.script(Reply(text="second here"))
    assert streamed(client) == "second here"
    assert len(upstream.requests) == 1  # not retried: the next deployment is


def test_first_hanging_past_the_timeout_falls_back(client, upstream, second, settings):
    settings.COMPLETIONS = {**settings.COMPLETIONS, "READ_TIMEOUT": 0.3}
    upstream.script(Hang(seconds=2))
    second.script(Reply(text="quick one"))
    assert ask(client) == "quick one"


def test_a_stream_failing_before_content_falls_back(client, upstream, second):
    upstream.script(Reply(text="never", fail_after=0, error={"message": "overloaded", "type": "server_error"}))
    second.script(Reply(text="steady"))
    assert streamed(client) == "steady"


def test_a_stream_failing_after_content_ends_in_error_and_is_not_retried(client, upstream, second):
    upstream.script(Reply(text="one two three four", fail_after=2, error={"message": "overloaded"}))
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    seen = ""
    with pytest.raises(openai.APIError, match="overloaded"):
        for chunk in stream:
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert seen == "one two"  # what reached the client stays the first deployment's
    assert second.requests == []


def test_the_callers_400_is_not_retried_elsewhere(client, upstream, second):
    upstream.script(Error(status=400, message="context too long", type="invalid_request_error"))
    with pytest.raises(openai.BadRequestError, match="context too long"):
        ask(client)
    assert second.requests == []


def test_all_failing_is_a_503_naming_no_host(client, first_down, second, third):
    second.script(Error(status=500))
    third.script(*[Error(status=503)] * 3)  # the last deployment keeps its retries
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client)
    assert caught.value.status_code == 503
    assert caught.value.code == "service_unavailable" and caught.value.type == "service_unavailable"
    assert "127.0.0.1" not in caught.value.message and "fake-model" in caught.value.message


def test_an_alias_reaches_the_same_deployments(client, upstream):
    upstream.script(Reply(text="aliased"))
    assert ask(client, model="default") == "aliased"
    assert upstream.requests[-1]["model"] == "first-id"


def test_cooldown_skips_a_failing_deployment_then_tries_it_again(client, upstream, second, settings):
    settings.ROUTING = {"COOLDOWN_FAILURES": 2, "FAILURE_WINDOW": 60.0, "COOLDOWN_SECONDS": 1.0}
    upstream.script(Error(status=500), Error(status=500))
    for _ in range(2):
        assert ask(client) == "You said: Hi"  # the second's echo
    assert len(upstream.requests) == 2
    assert ask(client) == "You said: Hi"
    assert len(upstream.requests) == 2  # cooling down: skipped
    time.sleep(1.1)
    upstream.script(Reply(text="back"))
    assert ask(client) == "back"
    assert len(upstream.requests) == 3


async def test_chat_reply_comes_from_the_second_when_the_first_is_down(user, routed, first_down, second, open_tab):
    second.script(Reply(text="chat from second"))
    conversation = await Conversation.objects.acreate(user=user, model=routed)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Hello")
    await tab.receive_until('class="message assistant" data-status="complete"')
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.content == "chat from second" and reply.status == "complete"
    stored = await StoredCompletion.objects.aget(message=reply)
    assert stored.provider == "Second" and len(stored.attempts) == 1
    record = await UsageRecord.objects.aget(message=reply)
    assert record.provider == "Second"


async def test_chat_when_every_deployment_fails_says_so_and_keeps_the_message(
    user, routed, first_down, second, third, open_tab
):
    second.script(Error(status=500))
    third.script(*[Error(status=502)] * 3)
    conversation = await Conversation.objects.acreate(user=user, model=routed)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Are you there?")
    html = await tab.receive_until('class="message assistant" data-status="error"')
    assert "Every provider of this model failed just now" in html
    assert "127.0.0.1" not in html
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    reply = await wait_for_status(reply.pk, "error")
    assert await Message.objects.filter(conversation=conversation, role="user", content="Are you there?").aexists()
    stored = await sync_to_async(StoredCompletion.objects.get)(message=reply)
    assert [a["deployment"] for a in stored.attempts] == ["First / first-id", "Second / second-id", "Third / third-id"]


@needs_services
def test_two_workers_share_a_cooldown_through_redis(user, routed, upstream, second, workers):
    start, _ = workers
    env = {"ROUTING_COOLDOWN_FAILURES": "2", "ROUTING_COOLDOWN_SECONDS": "60"}
    one, two = start("one", **env), start("two", **env)
    key = api_key_create(user=user, name="workers")[1]
    on = {
        port: openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0) for port in (one, two)
    }
    upstream.script(Error(status=500), Error(status=500))
    for _ in range(2):
        assert ask(on[one]) == "You said: Hi"
    assert len(upstream.requests) == 2
    assert ask(on[two]) == "You said: Hi"  # the other worker skips it too
    assert len(upstream.requests) == 2


def _route(key: str, **fields) -> Route:
    return Route(
        key=key, provider=key, upstream=Upstream(base_url="http://127.0.0.1:9/v1", api_key="", model=key), **fields
    )


async def test_equal_priorities_share_by_weight_and_lower_priorities_come_first(settings):
    settings.REDIS_URL = ""
    heavy, light, later = _route("heavy", weight=1_000_000), _route("light"), _route("later", priority=1)
    for _ in range(20):
        assert [r.key for r in await routes_ordered([later, light, heavy], tokens=1)] == ["heavy", "light", "later"]


async def test_a_deployment_past_its_requests_per_minute_is_tried_last(settings):
    settings.REDIS_URL = ""
    capped, spare = _route("capped", rpm=1), _route("spare", priority=1)
    assert [r.key for r in await routes_ordered([capped, spare], tokens=1)] == ["capped", "spare"]
    assert [r.key for r in await routes_ordered([capped, spare], tokens=1)] == ["spare", "capped"]


@pytest.fixture
def first_not_accepting(routed) -> Iterator[None]:
    """The first provider's port listens but its accept queue is full: connecting hangs until the connect timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    waiting = []
    for _ in range(3):  # fill the queue; later SYNs are dropped
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(server.getsockname())
        waiting.append(client)
    Provider.objects.filter(name="First").update(base_url=f"http://127.0.0.1:{server.getsockname()[1]}/v1")
    yield
    for sock in [*waiting, server]:
        sock.close()


def test_first_hanging_past_the_connect_timeout_falls_back(client, first_not_accepting, second, settings):
    settings.COMPLETIONS = {**settings.COMPLETIONS, "CONNECT_TIMEOUT": 0.3}
    second.script(Reply(text="connected elsewhere"))
    assert ask(client, store=True) == "connected elsewhere"
    stored = eventually(lambda: StoredCompletion.objects.first())
    assert stored.provider == "Second" and stored.attempts[0]["status"] == 504

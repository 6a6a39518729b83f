"""/metrics: scraped from the live server after a chat turn and /v1 calls, parsed as Prometheus reads it."""

from __future__ import annotations

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from conversations.accounts.api_keys import api_key_create
from conversations.models import Conversation
from tests.conftest import eventually
from tests.upstream import Error, Reply

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "scrape-token-for-tests"
DEPLOYMENT = "Fake / fake-upstream"  # the fake model's own provider and upstream id


def scrape(url: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}/metrics", headers=headers, timeout=10)


class Samples:
    """A scrape's samples, read by name and labels (a series not there yet is 0)."""

    def __init__(self, text: str) -> None:
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def __call__(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items())

    def labels_of(self, prefix: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name.startswith(prefix)]


def read(url: str) -> Samples:
    response = scrape(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Samples(response.text)


def off_thread(call):
    """``call`` from an async test, off the sync thread that the live server's views need meanwhile."""
    return sync_to_async(call, thread_sensitive=False)


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.fixture
def sdk(live_server_url, user, chat_model) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live_server_url}/v1", api_key=api_key_create(user=user, name="m")[1], max_retries=0
    )


async def test_a_chat_turn_and_v1_calls_move_the_counters(
    metrics_on, live_server_url, sdk, user, chat_model, upstream, open_tab
):
    before = await off_thread(read)(live_server_url)
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    during = await off_thread(read)(live_server_url)
    assert during("chatweb_sockets_open") == before("chatweb_sockets_open") + 1

    upstream.script(Reply(text="Hello there, how are you?"))  # 5 output tokens
    await tab.send(message="Hi!", model="fake-model")
    await tab.receive_until('class="message assistant" data-status="complete"')

    def v1_calls() -> None:
        upstream.script(Reply(text="one two three"), Error(status=400, message="bad request"))
        stream = sdk.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "count"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two three"
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "again"}])
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="made-up-model-xyz", messages=[{"role": "user", "content": "hi"}])

    await off_thread(v1_calls)()

    def after_calls() -> Samples:  # /v1 counts a call once its usage is written, just after answering
        samples = read(live_server_url)
        ended = samples("chatweb_completions_total", source="api")
        return samples if ended >= before("chatweb_completions_total", source="api") + 2 else None

    after = await off_thread(eventually)(after_calls)

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    common = {"model": "fake-model", "deployment": DEPLOYMENT}
    assert moved("chatweb_completions_total", **common, source="chat", status="completed") == 1
    assert moved("chatweb_completions_total", **common, source="api", status="completed") == 1
    assert moved("chatweb_completions_total", **common, source="api", status="error") == 1
    assert moved("chatweb_upstream_errors_total", deployment=DEPLOYMENT, kind="client_error") == 1
    assert moved("chatweb_tokens_total", model="fake-model", direction="output") == 5 + 3
    assert moved("chatweb_tokens_total", model="fake-model", direction="input") > 0
    assert moved("chatweb_cost_usd_total", model="fake-model") == 0  # the fake model has no price
    # Both streams' first tokens were timed; the failed call never streamed.
    assert moved("chatweb_completion_first_token_seconds_count", model="fake-model", source="chat") == 1
    assert moved("chatweb_completion_first_token_seconds_count", model="fake-model", source="api") == 1
    assert moved("chatweb_completion_duration_seconds_count", model="fake-model") == 3
    assert after("chatweb_streams_live") == 0
    assert moved("chatweb_http_requests_total", method="POST", route="/v1/chat/completions", status="200") == 1
    assert moved("chatweb_http_requests_total", method="POST", route="/v1/chat/completions", status="400") == 1
    assert moved("chatweb_http_requests_total", method="POST", route="/v1/chat/completions", status="404") == 1
    assert moved("chatweb_http_request_duration_seconds_count", method="POST", route="/v1/chat/completions") == 3
    # No series for this user (METRICS_PER_USER is off), and no label from what the requests said.
    assert not any(labels.get("user_id") == str(user.pk) for labels in after.labels_of("chatweb_user_"))
    assert not any("made-up-model" in value for labels in after.labels_of("chatweb_") for value in labels.values())


def test_paths_nobody_routes_share_one_label(metrics_on, live_server_url):
    before = read(live_server_url)
    for path in ("/no-such-page-1", "/no-such-page-2?x=1", "/c/123456789/"):
        httpx.get(f"{live_server_url}{path}", timeout=10)
    httpx.request("BREW", f"{live_server_url}/", timeout=10)
    after = read(live_server_url)
    assert (
        after("chatweb_http_requests_total", route="unmatched", status="404")
        - before("chatweb_http_requests_total", route="unmatched", status="404")
        == 2
    )
    assert after("chatweb_http_requests_total", route="/c/<int:conversation_id>/") > before(
        "chatweb_http_requests_total", route="/c/<int:conversation_id>/"
    )
    assert after("chatweb_http_requests_total", method="other") > before("chatweb_http_requests_total", method="other")
    assert not any(
        "no-such-page" in value or value == "BREW"
        for labels in after.labels_of("chatweb_http")
        for value in labels.values()
    )


def test_per_user_series_only_when_turned_on(metrics_on, settings, live_server_url, sdk, user, upstream):
    settings.METRICS_PER_USER = True
    upstream.script(Reply(text="four words in reply"))
    sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    samples = eventually(
        lambda: (s := read(live_server_url))("chatweb_user_completions_total", user_id=str(user.pk)) and s
    )
    assert samples("chatweb_user_completions_total", user_id=str(user.pk)) == 1
    assert samples("chatweb_user_tokens_total", user_id=str(user.pk), direction="output") == 4


def test_a_scrape_without_the_token_is_refused(metrics_on, live_server_url):
    for token in (None, "wrong-token", TOKEN + "x"):
        response = scrape(live_server_url, token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "chatweb_" not in response.text
    assert scrape(live_server_url).status_code == 200


def test_metrics_are_off_until_a_token_is_set(live_server_url, settings):
    settings.METRICS_TOKEN = ""
    assert scrape(live_server_url).status_code == 404
    assert scrape(live_server_url, token=None).status_code == 404


async def test_failed_group_sends_are_counted(user, chat_model, upstream, open_tab, monkeypatch):
    """The channel layer refusing a reply's events (as Redis does while it restarts): each failed send counts."""
    from channels.layers import get_channel_layer
    from prometheus_client import REGISTRY
    from redis.exceptions import ConnectionError as RedisConnectionError

    from conversations.models import Message
    from tests.conftest import wait_for_status

    layer = get_channel_layer()
    send = layer.group_send

    async def failing(group: str, message: dict) -> None:
        if message["type"] in ("chat.delta", "chat.blocks", "chat.done"):
            raise RedisConnectionError("Redis is restarting")
        await send(group, message)

    before = REGISTRY.get_sample_value("chatweb_channel_layer_send_failures_total")
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    monkeypatch.setattr(layer, "group_send", failing)
    upstream.script(Reply(text="Nobody hears this one."))
    await tab.send(message="Hello?")
    await tab.receive_until('class="message assistant"')  # the turn itself is announced (a chat.turn)
    reply = await wait_for_status((await Message.objects.aget(role="assistant")).pk, "complete")

    assert reply.content == "Nobody hears this one."  # the reply is kept all the same
    assert REGISTRY.get_sample_value("chatweb_channel_layer_send_failures_total") >= before + 2  # a delta, the end

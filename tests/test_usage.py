"""Usage and cost: exact arithmetic, price history, the ledger on every ending, budgets and rate limits."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from django.contrib.auth.models import Group
from django.db.models import Sum
from django.utils import timezone

from conversations.accounts.api_keys import api_key_create
from conversations.ledger.prices import Price, cost_of, price_at
from conversations.models import ChatModel, Conversation, GroupPolicy, Message, ModelPrice, UsageRecord, UserLimits
from tests.conftest import eventually
from tests.upstream import Hang, Reply

GPT_LIKE = Price(Decimal("2.50"), Decimal("1.25"), Decimal("10.00"), priced=True)


async def _model() -> ChatModel:
    return await ChatModel.objects.aget(name="fake-model")


def test_cost_counts_cached_prompt_tokens_at_the_cached_rate_and_reasoning_as_output():
    # 1,000 prompt tokens of which 400 cached; 300 completion tokens (reasoning included).
    cost = cost_of(price=GPT_LIKE, prompt_tokens=1000, cached_tokens=400, completion_tokens=300)
    assert cost == Decimal("0.0015") + Decimal("0.0005") + Decimal("0.003")
    assert isinstance(cost, Decimal)
    assert cost_of(price=GPT_LIKE, prompt_tokens=1, cached_tokens=0, completion_tokens=0) == Decimal("0.0000025")


@pytest.mark.django_db
def test_the_price_in_force_is_the_latest_that_started_before(chat_model):
    now = timezone.now()
    ModelPrice.objects.create(
        model="fake-model",
        input_per_million=1,
        cached_input_per_million=0,
        output_per_million=2,
        effective_from=now - timedelta(days=30),
    )
    ModelPrice.objects.create(
        model="fake-model",
        input_per_million=3,
        cached_input_per_million=0,
        output_per_million=4,
        effective_from=now + timedelta(days=1),
    )
    assert price_at(model="fake-model", at=now).input_per_million == 1
    assert price_at(model="fake-model", at=now + timedelta(days=2)).input_per_million == 3
    assert not price_at(model="fake-model", at=now - timedelta(days=31)).priced
    assert not price_at(model="unknown", at=now).priced


@pytest.mark.django_db
def test_negative_prices_are_rejected():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        ModelPrice.objects.create(model="m", input_per_million=-1, cached_input_per_million=0, output_per_million=0)


@pytest.fixture
def priced(chat_model):
    """fake-model costs 1 USD per million input tokens and 2 USD per million output tokens."""
    return ModelPrice.objects.create(
        model="fake-model",
        input_per_million=Decimal("1"),
        cached_input_per_million=Decimal("0.5"),
        output_per_million=Decimal("2"),
        effective_from=timezone.now() - timedelta(days=1),
    )


@pytest.mark.django_db(transaction=True)
async def test_a_chat_reply_is_settled_with_the_providers_usage_and_price_snapshot(user, priced, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=await _model())
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="one two three four"))
    await tab.send(message="count to four")
    await tab.receive_until('class="message assistant" data-status="complete"')

    record = await UsageRecord.objects.aget(message__conversation=conversation)
    assert record.state == "settled" and not record.estimated and record.priced
    assert record.completion_tokens == 4 and record.prompt_tokens == 3  # the loopback counts words
    assert record.cost == Decimal("0.000011")  # 3 × 1 + 4 × 2 per million

    # A later price change does not rewrite history.
    priced.output_per_million = Decimal("100")
    await priced.asave()
    assert (await UsageRecord.objects.aget(pk=record.pk)).cost == Decimal("0.000011")


@pytest.mark.django_db(transaction=True)
async def test_without_provider_usage_the_counts_are_estimated_and_marked(user, priced, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=await _model())
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="an answer with no usage in its stream", usage=False))
    await tab.send(message="hello there")
    html = await tab.receive_until('class="message assistant" data-status="complete"')

    record = await UsageRecord.objects.aget(message__conversation=conversation)
    assert record.estimated and record.prompt_tokens > 0 and record.completion_tokens > 0
    assert record.cost > 0
    assert "(estimated)" in html


@pytest.mark.django_db(transaction=True)
async def test_stopped_and_failed_replies_count_what_was_generated(user, priced, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=await _model())
    _, _, tab = await open_tab(user, conversation.pk)
    words = [f" w{i}" for i in range(300)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.01))
    await tab.send(message="go")
    await tab.receive_until(" w9")
    await tab.send(action="stop")
    await tab.receive_until('data-status="stopped"')
    stopped = await UsageRecord.objects.aget(message__status="stopped")
    assert stopped.state == "settled" and stopped.completion_tokens >= 10 and stopped.cost > 0

    upstream.script(Reply(text="a b c d e f", fail_after=3, error={"message": "boom", "type": "server_error"}))
    await tab.send(message="again")
    await tab.receive_until('data-status="error"')
    failed = await UsageRecord.objects.aget(message__status="error")
    assert failed.state == "settled" and failed.completion_tokens > 0 and failed.estimated


@pytest.fixture
def api(live_server_url, user, priced):
    raw = api_key_create(user=user, name="usage")[1]
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw, max_retries=0), raw


@pytest.mark.django_db(transaction=True)
def test_an_api_client_leaving_mid_stream_is_still_charged_for_what_was_generated(api, upstream, user):
    client, _ = api
    words = [f" w{i}" for i in range(200)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.01))
    stream = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "go"}], stream=True
    )
    for i, _chunk in enumerate(stream):
        if i == 10:
            break
    stream.close()
    record = _wait_settled(user)
    assert record.completion_tokens >= 9 and record.estimated and record.cost > 0


def _wait_settled(user) -> UsageRecord:
    """The user's latest usage record once settled (a call is settled just after its answer is sent; a client
    that left is noticed at the server's next read, seconds later on a loaded machine)."""
    return eventually(
        lambda: UsageRecord.objects.filter(user=user, state="settled").order_by("-pk").first(), timeout=30
    )


@pytest.mark.django_db(transaction=True)
def test_each_api_call_is_billed_once_and_linked_to_the_completion_it_stored(api, upstream, user):
    client, _ = api
    for text in ("first answer", "the second answer"):  # the second finds model, prices and limits cached
        upstream.script(Reply(text=text))
        completion = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], store=True
        )
    records = list(UsageRecord.objects.filter(user=user).order_by("pk"))
    assert [(r.state, r.completion_tokens, r.estimated) for r in records] == [
        ("settled", 2, False),
        ("settled", 3, False),
    ]
    assert records[1].stored_completion_id == completion.id
    assert records[1].cost == Decimal("0.000007")  # 1 prompt token × 1 + 3 × 2 per million


@pytest.mark.django_db(transaction=True)
def test_an_api_client_leaving_before_the_answer_still_has_the_call_recorded(api, upstream, user, live_server_url):
    _, raw = api
    upstream.script(Hang(1.0, then=Reply(text="too late")))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{live_server_url}/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {raw}"},
            timeout=0.3,
        )
    record = _wait_settled(user)
    assert record.model == "fake-model" and record.completion_tokens == 0 and record.estimated


@pytest.mark.django_db(transaction=True)
def test_a_stream_is_accounted_with_provider_usage_even_when_the_client_did_not_ask(api, upstream, user):
    client, _ = api
    upstream.script(Reply(text="alpha beta gamma"))
    chunks = list(
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)
    record = _wait_settled(user)
    assert record.completion_tokens == 3 and not record.estimated


@pytest.mark.django_db(transaction=True)
def test_rate_limit_answers_429_with_headers_and_the_chat_says_so(api, user, upstream, client):
    sdk, raw = api
    UserLimits.objects.create(user=user, requests_per_minute=1)
    sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "one"}])
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "two"}])
    assert caught.value.code == "rate_limit_exceeded"
    headers = caught.value.response.headers
    assert headers["x-ratelimit-limit-requests"] == "1" and headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 61

    client.force_login(user)
    response = client.post("/c/new", {"message": "please answer", "model": "fake-model"})
    assert response.status_code == 400
    assert "Rate limit reached" in response.content.decode() and "please answer</textarea>" in response.content.decode()
    assert not Message.objects.filter(content="please answer").exists()


@pytest.mark.django_db(transaction=True)
def test_budget_exhausted_is_insufficient_quota_and_the_typed_message_is_kept(api, user, client):
    sdk, _ = api
    UserLimits.objects.create(user=user, monthly_budget=Decimal("0.00"))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "insufficient_quota"
    assert "Retry-After" not in caught.value.response.headers  # waiting does not help

    client.force_login(user)
    html = client.post("/c/new", {"message": "my long question", "model": "fake-model"}).content.decode()
    assert "Monthly budget reached" in html and "my long question</textarea>" in html


def _race(live_server_url: str, upstream, raws: list[str]) -> list[int]:
    """Twenty /v1 calls at once (each reserving 50 output tokens), spread over the keys ``raws``; their statuses."""
    results: list[int] = []

    def call(raw: str) -> None:
        response = httpx.post(
            f"{live_server_url}/v1/chat/completions",
            json={"model": "fake-model", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {raw}"},
            timeout=30,
        )
        results.append(response.status_code)

    upstream.script(*[Reply(text=" ".join(["tok"] * 50), delay=0.001) for _ in range(20)])
    threads = [threading.Thread(target=call, args=(raws[i % len(raws)],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


POSTGRES_ONLY = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="real concurrency needs PostgreSQL"
)


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_cannot_overspend_the_last_cent(live_server_url, user, priced, upstream):
    """Each request reserves its worst case (max_tokens) before calling the provider, under a lock."""
    priced.output_per_million = Decimal("50")  # 50 output tokens: a quarter of a cent
    priced.save()
    UserLimits.objects.create(user=user, monthly_budget=Decimal("0.01"))
    results = _race(live_server_url, upstream, [api_key_create(user=user, name="race")[1]])

    spent = UsageRecord.objects.filter(user=user).aggregate(total=Sum("cost"))["total"]
    assert Decimal("0.0075") <= spent <= Decimal("0.01")  # three calls fit in the cent, a fourth would not
    assert results.count(200) == 3 and results.count(429) == 17
    eventually(lambda: UsageRecord.objects.filter(user=user, state="settled", completion_tokens=50).count() == 3)


@POSTGRES_ONLY
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_of_three_users_cannot_overspend_their_groups_last_cent(
    live_server_url, user, other_user, django_user_model, priced, upstream
):
    """Three members, none with a limit of their own, share a group budget: the group's row is the lock."""
    priced.output_per_million = Decimal("50")
    priced.save()
    group = Group.objects.create(name="Team")
    GroupPolicy.objects.create(group=group, monthly_budget=Decimal("0.01"))
    members = [user, other_user, django_user_model.objects.create_user(username="carol", password="carol-pw-123")]
    for member in members:
        member.groups.add(group)
    results = _race(live_server_url, upstream, [api_key_create(user=m, name="race")[1] for m in members])

    spent = UsageRecord.objects.filter(user__in=members).aggregate(total=Sum("cost"))["total"]
    assert Decimal("0.0075") <= spent <= Decimal("0.01")
    assert results.count(200) == 3 and results.count(429) == 17
    assert not UserLimits.objects.exists()  # the users' own rows took no part
    eventually(lambda: UsageRecord.objects.filter(user__in=members, state="settled", completion_tokens=50).count() == 3)


@pytest.mark.django_db(transaction=True)
async def test_a_budget_reached_in_the_chat_keeps_the_users_text(user, priced, open_tab):
    await UserLimits.objects.acreate(user=user, monthly_budget=Decimal("0"))
    conversation = await Conversation.objects.acreate(user=user, model=await _model())
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="will not fit")
    html = await tab.receive_until('id="composer-notice"')
    assert "Monthly budget reached" in html
    assert 'id="composer-input"' not in html  # the textarea (and what was typed) is left alone
    assert await Message.objects.filter(conversation=conversation).acount() == 0

"""Operators' logs: one line per request and per completion, JSON on request, and no content or secrets."""

import json
import logging

import openai
import pytest

from conversations.accounts.api_keys import api_key_create
from conversations.core.logs import JsonFormatter
from conversations.models import Conversation
from tests.conftest import eventually
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_PROMPT = "my secret plan is pineapple-42"


def _lines(caplog, logger: str) -> list[dict]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == logger]


def test_api_calls_log_a_request_line_and_a_completion_line(live_server_url, user, chat_model, upstream, caplog):
    raw = api_key_create(user=user, name="logs")[1]
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw, max_retries=0)
    upstream.script(Reply(text="the reply text stays out of logs"))
    with caplog.at_level(logging.INFO):
        response = client.chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": SECRET_PROMPT}]
        )
        request_id = response.headers["x-request-id"]
        completions = eventually(  # logged once the answer is on its way
            lambda: [line for line in _lines(caplog, "chatweb.completions") if line["request_id"] == request_id]
        )

    requests = [line for line in _lines(caplog, "chatweb.requests") if line["request_id"] == request_id]
    assert len(requests) == 1
    assert requests[0]["status"] == 200 and requests[0]["user_id"] == user.pk and requests[0]["latency_ms"] >= 0
    assert len(completions) == 1
    assert completions[0]["model"] == "fake-model" and completions[0]["status"] == "completed"
    assert completions[0]["completion_tokens"] == 7 and completions[0]["user_id"] == user.pk

    everything = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert SECRET_PROMPT not in everything and "stays out of logs" not in everything and raw not in everything
    assert "sk-test-upstream" not in everything  # the provider's key


async def test_chat_turns_log_a_completion_line(user, chat_model, upstream, open_tab, caplog):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    with caplog.at_level(logging.INFO):
        await tab.send(message=SECRET_PROMPT)
        await tab.receive_until('class="message assistant" data-status="complete"')
    (line,) = _lines(caplog, "chatweb.completions")
    assert line["source"] == "chat" and line["status"] == "completed" and line["user_id"] == user.pk
    assert SECRET_PROMPT not in json.dumps(line)


def test_page_requests_are_logged_with_their_user(client, user, caplog):
    client.force_login(user)
    with caplog.at_level(logging.INFO):
        response = client.get("/")
    (line,) = [r for r in caplog.records if r.name == "chatweb.requests"]
    assert line.user_id == user.pk and line.status == 200
    assert response["x-request-id"] == line.request_id


@pytest.mark.django_db(transaction=True)
async def test_async_page_requests_are_logged_with_their_user(user, chat_model, upstream, caplog):
    from django.test import AsyncClient

    client = AsyncClient()
    await client.aforce_login(user)
    with caplog.at_level(logging.INFO):
        await client.post("/c/new", {"message": "  "})
    (line,) = [r for r in caplog.records if r.name == "chatweb.requests"]
    assert line.user_id == user.pk and line.status == 400

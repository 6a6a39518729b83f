"""Generated titles: after the first reply, when the site setting is on, accounted and never blocking."""

import asyncio

import pytest

from conversations.chat import titles
from conversations.chat.generation.run import generation_running_ids
from conversations.chat.titles import title_clean
from conversations.models import Conversation, Message, SiteSettings, UsageRecord
from tests.conftest import wait_for_status
from tests.upstream import Error, Reply

pytestmark = pytest.mark.django_db(transaction=True)


async def first_turn(user, chat_model, upstream, open_tab, *script):
    upstream.script(Reply(text="Paris is the capital of France."), *script)
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="What is the capital of France? Tell me about it please", model="fake-model")
    return conversation, tab


async def test_the_first_reply_gets_a_generated_title_accounted_as_usage(user, chat_model, upstream, open_tab):
    await SiteSettings.objects.aupdate_or_create(pk=1, defaults={"generate_titles": True})
    conversation, tab = await first_turn(user, chat_model, upstream, open_tab, Reply(text='"France\'s capital city."'))
    html = await tab.receive_until('data-status="complete"')
    assert "France&#x27;s capital city" not in html  # the reply came first, the title after it
    html = await tab.receive_until("France&#x27;s capital city</span>")
    assert 'hx-swap-oob="innerHTML:#conversation-title">France&#x27;s capital city</span>' in html
    await conversation.arefresh_from_db()
    assert conversation.title == "France's capital city"
    title_call = upstream.requests[-1]
    assert title_call["max_tokens"] == 24 and not title_call.get("stream")
    assert "Paris is the capital of France." in title_call["messages"][1]["content"]
    title_usage = await UsageRecord.objects.aget(user=user, message__isnull=True)
    assert title_usage.state == "settled" and title_usage.completion_tokens > 0 and title_usage.model == "fake-model"


async def test_without_the_setting_the_first_message_stays_the_title(user, chat_model, upstream, open_tab):
    conversation, tab = await first_turn(user, chat_model, upstream, open_tab)
    await tab.receive_until('data-status="complete"')
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    await wait_for_status(reply.pk, "complete")
    await conversation.arefresh_from_db()
    assert conversation.title == "What is the capital of France? Tell me about it please"
    assert len(upstream.requests) == 1 and await UsageRecord.objects.acount() == 1


async def test_a_failed_title_call_keeps_the_title_and_the_reply(user, chat_model, upstream, open_tab):
    await SiteSettings.objects.aupdate_or_create(pk=1, defaults={"generate_titles": True})
    conversation, tab = await first_turn(user, chat_model, upstream, open_tab, Error(status=400, message="nope"))
    await tab.receive_until('data-status="complete"')
    for _ in range(250):  # the title call is made, fails, and its reservation is settled
        if len(upstream.requests) == 2 and not await UsageRecord.objects.filter(state="reserved").aexists():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the failed title call was never settled")
    await conversation.arefresh_from_db()
    assert conversation.title == "What is the capital of France? Tell me about it please"
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "complete" and reply.content == "Paris is the capital of France."
    assert not await UsageRecord.objects.filter(state="reserved").aexists()


@pytest.mark.parametrize(
    "answer, title",
    [
        ('"Trip to Lisbon"', "Trip to Lisbon"),
        ("Title: Sourdough starter care.\nMore text", "Sourdough starter care"),
        ("**Bold idea**", "Bold idea"),
        ("   ", ""),
        ("word " * 40, ("word " * 12).strip()[:59].rstrip() + "…"),
    ],
)
def test_titles_are_cleaned(answer, title):
    assert title_clean(answer) == title


async def test_a_conversation_renamed_before_its_first_reply_ends_keeps_its_name(user, chat_model, upstream, open_tab):
    await SiteSettings.objects.aupdate_or_create(pk=1, defaults={"generate_titles": True})
    upstream.script(Reply(text="Paris is the capital of France.", delay=0.05), Reply(text="Generated"))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="What is the capital of France?", model="fake-model")
    await tab.receive_until('data-status="streaming"')
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="My own name")
    await tab.receive_until('data-status="complete"')
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    await wait_for_status(reply.pk, "complete")
    for _ in range(500):  # the generation ends after deciding about the title (any call is a task of its own)
        if reply.pk not in generation_running_ids():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the generation did not end")
    await conversation.arefresh_from_db()
    assert conversation.title == "My own name" and not titles._tasks and len(upstream.requests) == 1

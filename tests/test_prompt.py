"""One prompt per turn: what a reply's reservation counts is what its call sends the provider."""

from __future__ import annotations

import asyncio

import pytest

from conversations.models import Conversation, Message, UsageRecord
from conversations.providers.tokens import messages_tokens_guess
from tests.upstream import Hang, Reply

FINISHED = 'id="conversation-usage"'  # the totals a tab is sent after a reply's end


async def _sent_after(upstream, count: int) -> list[dict]:
    """The messages of the provider's next request after ``count`` of them, failing if none comes in 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(upstream.requests) <= count:
        if loop.time() > deadline:
            raise AssertionError("the provider was never called")
        await asyncio.sleep(0.02)
    return upstream.requests[count]["messages"]


async def _reserved_while_in_flight(reply: Message) -> UsageRecord:
    """The reply's latest usage record while its call is still under way (the reservation, not yet settled)."""
    record = await UsageRecord.objects.filter(message=reply).order_by("-id").afirst()
    assert record is not None and record.state == "reserved"
    return record


@pytest.mark.django_db(transaction=True)
async def test_a_turns_reservation_counts_the_messages_its_call_sends(user, chat_model, upstream, open_tab):
    """A system prompt, an earlier turn, then a reply in flight: its budget was reserved for what was sent."""
    conversation = await Conversation.objects.acreate(user=user, model=chat_model, system_prompt="Answer in verse.")
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="An earlier question, long enough to count for several tokens of the prompt.")
    await tab.receive_until(FINISHED)

    upstream.script(Hang(seconds=3, then=Reply(text="done")))
    before = len(upstream.requests)
    await tab.send(message="And the question now")
    sent = await _sent_after(upstream, before)
    reply = await Message.objects.filter(conversation=conversation, role="assistant").order_by("-id").afirst()
    record = await _reserved_while_in_flight(reply)

    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert record.prompt_tokens == messages_tokens_guess(sent)


@pytest.mark.django_db(transaction=True)
async def test_a_continued_replys_reservation_counts_its_text_so_far(user, chat_model, upstream, open_tab):
    """Continue sends the reply so far as the start of the answer; its reservation counts that too."""
    conversation = await Conversation.objects.acreate(user=user, model=chat_model, system_prompt="Be brief.")
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="The first half of a long answer", finish_reason="length"))
    await tab.send(message="Tell me")
    await tab.receive_until(FINISHED)
    reply = await Message.objects.aget(conversation=conversation, role="assistant")

    upstream.script(Hang(seconds=3, then=Reply(text=" and the rest.")))
    before = len(upstream.requests)
    await tab.send(action="continue", message_id=str(reply.pk))
    sent = await _sent_after(upstream, before)
    record = await _reserved_while_in_flight(reply)

    assert sent[-1] == {"role": "assistant", "content": "The first half of a long answer"}
    assert record.prompt_tokens == messages_tokens_guess(sent)

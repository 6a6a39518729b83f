"""The chat websocket end to end: send, stream, save, fan out, stop, resume."""

import pytest

from conversations.models import Conversation, Message
from tests.conftest import wait_for_status
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)


async def test_send_streams_fragments_and_saves_final_text(user, chat_model, upstream, open_tab):
    upstream.script(Reply(text="Hello there, how are you?", delay=0.01))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    connected, _, tab = await open_tab(user, conversation.pk)
    assert connected

    await tab.send(message="Hi!", model="fake-model")
    html = await tab.receive_until('class="message assistant" data-status="complete"')

    assert "Hi!" in html
    assert html.count("hx-swap-oob=\"beforeend:#message-") >= 5  # streamed piece by piece
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "complete"
    assert reply.content == "Hello there, how are you?"
    assert reply.finish_reason == "stop"
    assert reply.completion_tokens == 5 and not reply.usage_estimated
    assert upstream.requests[-1]["model"] == "fake-upstream"
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "Hi!"}]

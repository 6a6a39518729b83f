"""The chat websocket end to end: send, stream, save, fan out, stop, resume."""

import pytest
from asgiref.sync import sync_to_async

from conversations.chat.generation.run import generation_start
from conversations.chat.selectors import message_page
from conversations.models import Conversation, Message, StoredCompletion, UsageRecord
from tests.conftest import path_append, wait_for_status
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)


async def test_send_streams_fragments_and_saves_final_text(user, chat_model, upstream, open_tab):
    upstream.script(Reply(text="Hello there, how are you?", delay=0.05))  # a loaded machine still sends each alone
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    connected, _, tab = await open_tab(user, conversation.pk)
    assert connected

    await tab.send(message="Hi!", model="fake-model")
    html = await tab.receive_until('class="message assistant" data-status="complete"')
    header = await tab.receive_until('id="conversation-usage"')

    assert "Hi!" in html
    assert html.count('hx-swap-oob="beforeend:#message-') >= 5  # streamed piece by piece
    assert "6 tokens</span> in 1 reply" in header  # the conversation's totals follow each reply
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "complete"
    assert reply.content == "Hello there, how are you?"
    assert reply.finish_reason == "stop"
    assert reply.content_html == "<p>Hello there, how are you?</p>\n"  # rendered once, when finished
    assert reply.completion_tokens == 5 and not reply.usage_estimated
    assert upstream.requests[-1]["model"] == "fake-upstream"
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "Hi!"}]
    assert "max_tokens" not in upstream.requests[-1]  # no limit set: the provider's own
    assert "length limit" not in html
    # The turn is kept for review in the admin, linked to its message.
    stored = await StoredCompletion.objects.aget(message=reply)
    assert stored.source == "chat" and stored.status == "completed" and stored.user_id == user.pk
    assert stored.messages == [{"role": "user", "content": "Hi!"}]
    assert stored.response["choices"][0]["message"]["content"] == "Hello there, how are you?"
    assert stored.completion_tokens == 5 and stored.provider == "Fake"


async def test_reply_keeps_generating_after_the_tab_closes_and_a_new_tab_gets_the_rest(
    user, chat_model, upstream, open_tab, settings
):
    settings.STREAM_SAVE_INTERVAL = 0.05
    words = [f" w{i}" for i in range(30)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.03))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, first = await open_tab(user, conversation.pk)
    await first.send(message="Count for me")
    await first.receive_until(" w3")
    await first.close()

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    # What a reloaded page would show: the text saved so far, with the reply still streaming.
    reply = await wait_for_status(reply.pk, "streaming")
    _, _, second = await open_tab(user, conversation.pk, query=f"streaming={reply.pk}")
    html = await second.receive_until('class="message assistant" data-status="complete"')

    # The new tab first gets the full text so far, then only what follows it: no piece
    # is shown on top of the stale saved text before the text so far arrives.
    snapshot_at = html.index(f'id="message-{reply.pk}-body"')
    assert "beforeend:#message-" not in html[:snapshot_at]
    later = html[snapshot_at:]
    tail_at = later.index('class="tail">') + len('class="tail">')
    streamed = later[tail_at : later.index("</div>", tail_at)] + "".join(_deltas(later))
    assert streamed.startswith(" w0 w1 w2 w3")
    assert streamed == "".join(words)
    saved = await Message.objects.aget(pk=reply.pk)
    assert saved.status == "complete" and saved.content == "".join(words)


async def test_two_tabs_both_see_the_stream(user, chat_model, upstream, open_tab):
    upstream.script(Reply(text="one two three", delay=0.01))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab_a = await open_tab(user, conversation.pk)
    _, _, tab_b = await open_tab(user, conversation.pk)

    await tab_a.send(message="Hello from A")
    seen_b = await tab_b.receive_until('class="message assistant" data-status="complete"')

    assert "Hello from A" in seen_b
    assert _deltas(seen_b) and "".join(_deltas(seen_b)) == "one two three"  # streamed live, spaces kept
    assert "one two three" in seen_b  # the final rendered message


def _deltas(html: str) -> list[str]:
    """The texts of the streamed pieces (delta partials) in the order a tab received them."""
    return [part[part.index(">") + 1 : part.index("</span>")] for part in html.split("beforeend:#message-")[1:]]


async def test_a_models_length_limit_bounds_the_reply_its_reservation_and_says_so(user, chat_model, upstream, open_tab):
    chat_model.max_tokens = 5
    await chat_model.asave()
    words = [f" w{i}" for i in range(5)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.05, finish_reason="length"))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Tell me everything")
    await tab.receive_until(" w0")
    reserved = await UsageRecord.objects.aget(user=user)
    assert reserved.state == "reserved" and reserved.completion_tokens == 5  # not the default reserve

    html = await tab.receive_until('class="message assistant" data-status="complete"')

    assert upstream.requests[-1]["max_tokens"] == 5
    assert "reached this model's length limit" in html
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.finish_reason == "length"
    assert (await StoredCompletion.objects.aget(message=reply)).request["max_tokens"] == 5


async def test_a_tab_that_asked_before_the_generation_listened_still_follows_it_live(
    user, chat_model, upstream, open_tab
):
    """A tab opened (or switched to the branch) between a reply's creation and the start of its
    generation asks for its text when nobody listens yet: it is asked again, and streams live."""
    words = [f" w{i}" for i in range(20)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.03))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, reply = await sync_to_async(path_append)(
        conversation, {"role": "user", "content": "Count"}, {"role": "assistant", "status": "streaming"}
    )
    _, _, tab = await open_tab(user, conversation.pk)
    assert await tab.communicator.receive_nothing(timeout=0.3)  # it has asked, and nobody answered
    generation_start(message_id=reply.pk)
    html = await tab.receive_until(" w10")

    assert 'data-status="complete"' not in html  # shown while it streams, not only once it ended
    await tab.receive_until('data-status="complete"')


async def test_stop_keeps_the_partial_text(user, chat_model, upstream, open_tab):
    words = [f" w{i}" for i in range(200)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.02))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Go on and on")
    await tab.receive_until(" w5")  # alone or sent together with the words after it

    await tab.send(action="stop")
    html = await tab.receive_until('data-status="stopped"')

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "stopped"
    assert reply.content.startswith(" w0 w1 w2 w3 w4 w5")
    assert len(reply.content) < len("".join(words))
    assert "Stopped." in html
    assert (await StoredCompletion.objects.aget(message=reply)).status == "stopped"
    # The conversation is usable again.
    upstream.script(Reply(text="Fine."))
    await tab.send(message="Next")
    await tab.receive_until('class="message assistant" data-status="complete"')


async def test_upstream_error_is_shown_under_the_reply_with_partial_text(user, chat_model, upstream, open_tab):
    upstream.script(
        Reply(text="partial answer then", fail_after=2, error={"message": "model overloaded", "type": "server_error"})
    )
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Hi")
    html = await tab.receive_until('data-status="error"')

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.content == "partial answer"
    assert "model overloaded" in reply.error
    assert "model overloaded" in html and "partial answer" in html


async def test_bad_provider_key_reads_as_a_key_problem(user, chat_model, upstream, open_tab):
    from tests.upstream import Error

    upstream.script(Error(status=401, message="Incorrect API key provided", type="invalid_request_error"))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Hi")
    html = await tab.receive_until('data-status="error"')
    assert "API key" in html
    assert len(upstream.requests) == 1  # a 401 is not retried
    assert " in · " not in html  # nothing was generated, so no token or cost line


async def test_sending_while_a_reply_streams_is_refused_with_a_notice(user, chat_model, upstream, open_tab):
    upstream.script(Reply(text="slow " * 20, delay=0.02))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="First")
    await tab.receive_until('data-status="streaming"')

    await tab.send(message="Second, too early")
    html = await tab.receive_until('id="composer-notice"')
    assert "Wait for the current reply" in html
    await tab.receive_until('class="message assistant" data-status="complete"')
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1


async def test_empty_and_oversized_messages_get_a_notice(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="   ")
    assert "Type a message first" in await tab.receive_until('id="composer-notice"')
    await tab.send(message="x" * 100_001)
    assert "limit is 100,000" in await tab.receive_until('id="composer-notice"')
    await tab.send(message="hi", model="no-such-model")
    assert "is not available" in await tab.receive_until('id="composer-notice"')
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_regenerate_shows_a_new_reply_and_keeps_the_old_as_its_sibling(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="First try"))
    await tab.send(message="Hi")
    await tab.receive_until('class="message assistant" data-status="complete"')
    first = await Message.objects.aget(conversation=conversation, role="assistant")

    upstream.script(Reply(text="Second try"))
    await tab.send(action="regenerate")
    html = await tab.receive_until('class="message assistant" data-status="complete"')

    assert f'id="message-{first.pk}" hx-swap-oob="delete"' in html
    shown, _ = await sync_to_async(message_page)(conversation=conversation)
    assert [m.content for m in shown if m.role == "assistant"] == ["Second try"]
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "Hi"}]
    # The first try is kept off the path, a sibling of the second, still the message its usage and stored turn name.
    second = await Message.objects.aget(conversation=conversation, role="assistant", content="Second try")
    assert (await Message.objects.aget(pk=first.pk)).parent_id == second.parent_id
    assert await UsageRecord.objects.filter(message_id=first.pk, state="settled").aexists()
    assert await StoredCompletion.objects.filter(message_id=first.pk).aexists()


async def test_another_users_conversation_socket_is_refused(user, other_user, chat_model, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    connected, code, _ = await open_tab(other_user, conversation.pk)
    assert not connected and code == 4404


async def test_anonymous_socket_is_refused(user, chat_model, open_tab):
    from django.contrib.auth.models import AnonymousUser

    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    connected, code, _ = await open_tab(AnonymousUser(), conversation.pk)
    assert not connected and code == 4401


async def test_xss_in_a_streamed_reply_is_escaped_and_sanitised(user, chat_model, upstream, open_tab):
    evil = "<script>alert(1)</script> <img src=x onerror=alert(2)> [link](javascript:alert(3))"
    upstream.script(Reply(text=evil, pieces=[evil[:20], evil[20:50], evil[50:]]))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="<b>bold?</b>")
    html = await tab.receive_until('class="message assistant" data-status="complete"')

    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert 'href="javascript' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # streamed as visible text
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html


async def test_finished_blocks_arrive_formatted_while_the_reply_streams_and_a_new_tab_gets_them_too(
    user, chat_model, upstream, open_tab, settings
):
    settings.STREAM_SAVE_INTERVAL = 0.05
    text = "## Steps\n\n<script>alert(1)</script> first\n\n- one\n- two\n\n" + "The last words, still coming in. " * 10
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    upstream.script(Reply(text=text, pieces=pieces, delay=0.03))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Format it")

    live = await tab.receive_until("<li>two</li>")
    assert 'class="message assistant" data-status="complete"' not in live  # before the reply ended
    assert '<div class="markdown blocks"><h2>Steps</h2>' in live
    assert "<p>&lt;script&gt;alert(1)&lt;/script&gt; first</p>" in live and "<script" not in live

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    _, _, second = await open_tab(user, conversation.pk, query=f"streaming={reply.pk}")
    # Joined mid-reply (its last words take two more seconds): the text so far comes formatted.
    joined = await second.receive_until(f'id="message-{reply.pk}-body"')
    assert '<div class="markdown blocks"><h2>Steps</h2>' in joined
    assert 'data-status="complete"' not in joined
    await tab.receive_until('class="message assistant" data-status="complete"')
    saved = await Message.objects.aget(pk=reply.pk)
    assert saved.content == text

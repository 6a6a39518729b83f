"""Branches: editing as a new version, regenerating any reply, switching versions, continuing, deleting."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from conversations.chat.branches import branch_delete, message_edit, message_select
from conversations.chat.selectors import message_page, message_path_ids
from conversations.chat.turns import MAX_MESSAGE_CHARS, message_regenerate
from conversations.core.errors import InvalidInput, NotFound
from conversations.models import Conversation, Message, StoredCompletion, UsageRecord
from tests.conftest import wait_for_status
from tests.test_tree import _message
from tests.upstream import Reply

COMPLETE = 'class="message assistant" data-status="complete"'
# Sent once a reply has ended, after it: a turn rendered after a quick reply ended already shows it COMPLETE.
FINISHED = 'id="conversation-usage"'


def _conversation(user, chat_model):
    """Q1 → A1 → Q2 → A2, on one path."""
    conversation = Conversation.objects.create(user=user, model=chat_model)
    q1 = _message(conversation, None, "user", "Q1")
    a1 = _message(conversation, q1, "assistant", "A1")
    q2 = _message(conversation, a1, "user", "Q2")
    a2 = _message(conversation, q2, "assistant", "A2")
    conversation.current_leaf = a2
    conversation.save()
    return conversation, (q1, a1, q2, a2)


def _shown(conversation):
    messages, _ = message_page(conversation=Conversation.objects.get(pk=conversation.pk))
    return messages


# --- Services ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_editing_a_user_message_makes_a_version_beside_it_with_a_reply_to_generate(user, chat_model):
    conversation, (q1, a1, q2, a2) = _conversation(user, chat_model)

    edited, reply = message_edit(conversation=conversation, message_id=q2.pk, content="  Q2, better  ")

    assert (edited.parent_id, edited.content, reply.parent_id, reply.status) == (
        a1.pk,
        "Q2, better",
        edited.pk,
        "streaming",
    )
    assert message_path_ids(conversation=conversation) == [q1.pk, a1.pk, edited.pk, reply.pk]
    shown = _shown(conversation)
    assert [m.content for m in shown] == ["Q1", "A1", "Q2, better", ""]
    assert (shown[2].sibling_index, shown[2].sibling_count, shown[2].sibling_prev) == (2, 2, q2.pk)
    assert Message.objects.filter(pk__in=[q2.pk, a2.pk]).count() == 2  # the old branch is kept
    assert UsageRecord.objects.get(message=reply).state == "reserved"


@pytest.mark.django_db
def test_editing_a_reply_saves_a_version_and_generates_nothing(user, chat_model, upstream):
    conversation, (q1, a1, q2, a2) = _conversation(user, chat_model)

    edited, reply = message_edit(conversation=conversation, message_id=a1.pk, content="A1 **fixed**")

    assert reply is None and not upstream.requests
    assert (edited.role, edited.status, edited.parent_id) == ("assistant", "complete", q1.pk)
    assert edited.content_html == "<p>A1 <strong>fixed</strong></p>\n"
    assert [m.content for m in _shown(conversation)] == ["Q1", "A1 **fixed**"]
    assert not Message.objects.filter(status="streaming").exists()


@pytest.mark.django_db
def test_bad_edits_change_nothing_and_say_why(user, other_user, chat_model):
    conversation, (q1, a1, q2, a2) = _conversation(user, chat_model)
    theirs, (their_q, *_) = _conversation(other_user, chat_model)
    count = Message.objects.count()

    with pytest.raises(InvalidInput, match="Type a message first"):
        message_edit(conversation=conversation, message_id=q2.pk, content="   ")
    with pytest.raises(InvalidInput, match="the limit is 100,000"):
        message_edit(conversation=conversation, message_id=q2.pk, content="x" * (MAX_MESSAGE_CHARS + 1))
    for stranger in (their_q.pk, "abc", 10**30, None):
        with pytest.raises(NotFound):
            message_edit(conversation=conversation, message_id=stranger, content="hi")
        with pytest.raises(NotFound):
            message_select(conversation=conversation, message_id=stranger)
    assert Message.objects.count() == count


@pytest.mark.django_db
def test_regenerating_an_earlier_reply_branches_there(user, chat_model):
    conversation, (q1, a1, q2, a2) = _conversation(user, chat_model)

    ended_path, reply = message_regenerate(conversation=conversation, message_id=a1.pk)

    assert ended_path is None  # not the last reply: the tabs are sent the new branch
    assert reply.parent_id == q1.pk
    assert message_path_ids(conversation=conversation) == [q1.pk, reply.pk]
    message_select(conversation=conversation, message_id=a1.pk)  # back: down to its newest message
    assert message_path_ids(conversation=conversation) == [q1.pk, a1.pk, q2.pk, a2.pk]
    assert [(m.sibling_index, m.sibling_count) for m in _shown(conversation)] == [(1, 1), (1, 2), (1, 1), (1, 1)]


@pytest.mark.django_db
def test_deleting_a_branch_shows_the_newest_other_version_or_ends_the_path_before_it(user, chat_model):
    conversation, (q1, a1, q2, a2) = _conversation(user, chat_model)
    b1 = _message(conversation, q1, "assistant", "B1")
    b2 = _message(conversation, _message(conversation, b1, "user", "QB"), "assistant", "B2")
    Message.objects.filter(pk=b2.pk).update(status="streaming")
    message_select(conversation=conversation, message_id=b1.pk)

    assert branch_delete(conversation=conversation, message_id=b1.pk) == [b2.pk]  # what streamed there is stopped
    assert message_path_ids(conversation=conversation) == [q1.pk, a1.pk, q2.pk, a2.pk]
    assert not Message.objects.filter(pk__in=[b1.pk, b2.pk]).exists()

    assert branch_delete(conversation=conversation, message_id=q2.pk) == []
    assert message_path_ids(conversation=conversation) == [q1.pk, a1.pk]


# --- Over the socket ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_edit_switch_and_regenerate_over_the_socket_reach_every_tab(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    _, _, other = await open_tab(user, conversation.pk)
    await tab.send(message="Hello")
    await tab.receive_until(COMPLETE)
    first = await Message.objects.aget(conversation=conversation, content="Hello")

    await tab.send(action="edit", message_id=str(first.pk), message="Hello again")
    html = await tab.receive_until(COMPLETE)
    assert 'id="messages" hx-swap-oob="innerHTML"' in html  # the new branch, sent whole
    assert "2 / 2" in html and "Hello again" in html
    assert upstream.requests[-1]["messages"] == [{"role": "user", "content": "Hello again"}]
    assert "Hello again" in await other.receive_until('id="messages" hx-swap-oob="innerHTML"')

    await tab.send(action="switch", message_id=str(first.pk))
    seen = await other.receive_until('id="messages" hx-swap-oob="innerHTML"')
    page = seen[seen.rindex('<div id="messages" hx-swap-oob="innerHTML"') :]
    assert "You said: Hello<" in page and "Hello again" not in page and "1 / 2" in page

    await tab.receive_until('id="messages" hx-swap-oob="innerHTML"')
    await tab.send(action="regenerate", message_id=str(await _reply_to(first)))
    await tab.receive_until(COMPLETE)
    shown = await sync_to_async(_shown)(conversation)
    assert [(m.content, m.sibling_index, m.sibling_count) for m in shown] == [
        ("Hello", 1, 2),
        ("You said: Hello", 2, 2),
    ]


async def _reply_to(message):
    return (await Message.objects.filter(parent=message).alast()).pk


@pytest.mark.django_db(transaction=True)
async def test_edits_refused_while_a_reply_streams_but_switching_shows_it_live(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="One")
    await tab.receive_until(COMPLETE)
    one = await Message.objects.aget(conversation=conversation, content="One")
    words = [f" w{i}" for i in range(60)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.04))
    await tab.send(action="edit", message_id=str(one.pk), message="Two")
    await tab.receive_until(" w2")
    streaming = await Message.objects.aget(conversation=conversation, status="streaming")

    await tab.send(action="regenerate", message_id=str(streaming.pk))
    assert "Wait for the current reply to finish, or stop it." in await tab.receive_until('id="composer-notice"')
    await tab.send(action="edit", message_id=str(one.pk), message="Three")
    assert "Wait for the current reply to finish" in await tab.receive_until('id="edit-notice"')

    # Away from the streaming branch: its deltas are no longer sent to this tab.
    await tab.send(action="switch", message_id=str(one.pk))
    away = await tab.receive_until('id="messages" hx-swap-oob="innerHTML"')
    assert f'id="message-{streaming.pk}"' not in away
    tab.received.clear()
    await tab.communicator.receive_nothing(timeout=0.3)
    # And back to it: the text so far, then live to the end.
    two = await Message.objects.aget(conversation=conversation, content="Two")
    await tab.send(action="switch", message_id=str(two.pk))
    back = await tab.receive_until(COMPLETE, timeout=15)
    assert f'id="message-{streaming.pk}-body"' in back  # the text so far, as a snapshot
    assert f"beforeend:#message-{streaming.pk}-tail" in back  # then live
    finished = await wait_for_status(streaming.pk, "complete")
    assert finished.content == "".join(words)


@pytest.mark.django_db(transaction=True)
async def test_a_tab_reloaded_on_another_branch_than_the_current_is_sent_the_current(
    user, chat_model, upstream, open_tab
):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Hello")
    await tab.receive_until(FINISHED)
    old_reply = await Message.objects.aget(conversation=conversation, role="assistant")
    await tab.send(action="regenerate")
    await tab.receive_until(FINISHED)

    _, _, stale = await open_tab(user, conversation.pk, query=f"streaming=&leaf={old_reply.pk}")
    page = await stale.receive_until('id="messages" hx-swap-oob="innerHTML"')
    assert "2 / 2" in page
    _, _, fresh = await open_tab(user, conversation.pk, query=f"streaming=&leaf={(await _reply_to_leaf(conversation))}")
    assert await fresh.communicator.receive_nothing(timeout=0.3)


async def _reply_to_leaf(conversation):
    return (await Conversation.objects.aget(pk=conversation.pk)).current_leaf_id


@pytest.mark.django_db(transaction=True)
async def test_continue_appends_to_a_cut_reply_and_each_call_is_accounted_and_stored(
    user, chat_model, upstream, open_tab
):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model, system_prompt="Be helpful.")
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="The first half", finish_reason="length"))
    await tab.send(message="Tell me")
    html = await tab.receive_until(FINISHED)
    assert "Continue" in html
    reply = await Message.objects.aget(conversation=conversation, role="assistant")

    upstream.script(Reply(text=" and the second half."))
    await tab.send(action="continue", message_id=str(reply.pk))
    html = await tab.receive_until(FINISHED)

    assert "The first half and the second half." in html
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "Tell me"},
        {"role": "assistant", "content": "The first half"},
    ]
    reply = await Message.objects.aget(pk=reply.pk)
    assert (reply.content, reply.finish_reason, reply.status) == (
        "The first half and the second half.",
        "stop",
        "complete",
    )
    records = [r async for r in UsageRecord.objects.filter(message=reply).order_by("id")]
    assert [(r.state, r.completion_tokens) for r in records] == [("settled", 3), ("settled", 4)]
    assert reply.completion_tokens == 7  # the reply counts both calls
    stored = [s async for s in StoredCompletion.objects.filter(message=reply).order_by("created_at")]
    assert [s.response["choices"][0]["message"]["content"] for s in stored] == [
        "The first half",
        " and the second half.",
    ]
    assert [s.response["choices"][0]["finish_reason"] for s in stored] == ["length", "stop"]
    assert stored[1].messages[-1] == {"role": "assistant", "content": "The first half"}
    assert "7 out" in html  # the footer sums the calls

    await tab.send(action="continue", message_id=str(reply.pk))  # finished normally: nothing to continue
    assert "can be continued" in await tab.receive_until('id="composer-notice"')


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_branch_stops_what_streams_in_it(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    words = [f" w{i}" for i in range(200)]
    upstream.script(Reply(text="".join(words), pieces=words, delay=0.03))
    await tab.send(message="Go on and on")
    await tab.receive_until(" w2")
    question = await Message.objects.aget(conversation=conversation, role="user")
    reply = await Message.objects.aget(conversation=conversation, role="assistant")

    await tab.send(action="delete", message_id=str(question.pk))
    page = await tab.receive_until('id="messages" hx-swap-oob="innerHTML"')
    assert "Go on and on" not in page

    async def settled():
        return await UsageRecord.objects.filter(state="settled").aexists()

    for _ in range(200):  # the generation, stopped, settles what it used
        if await settled():
            break
        await __import__("asyncio").sleep(0.02)
    record = await UsageRecord.objects.aget()
    assert record.state == "settled" and 0 < record.completion_tokens < 200 and record.message_id is None
    assert not await Message.objects.filter(pk=reply.pk).aexists()

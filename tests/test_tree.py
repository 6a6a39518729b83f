"""Conversations are trees: the current path is what the page shows and the model is sent."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from conversations.chat.selectors import message_page, message_path_ids
from conversations.chat.turns import conversation_branch_select
from conversations.core.errors import NotFound
from conversations.models import Conversation, Message
from tests.upstream import Reply

COMPLETE = 'class="message assistant" data-status="complete"'


def _message(conversation, parent, role, content):
    return Message.objects.create(conversation=conversation, parent=parent, role=role, content=content)


@pytest.mark.django_db
def test_choosing_a_branch_shows_it_down_to_its_newest_message(user, chat_model):
    conversation = Conversation.objects.create(user=user, model=chat_model)
    question = _message(conversation, None, "user", "Q")
    first = _message(conversation, question, "assistant", "A1")
    follow_up = _message(conversation, first, "user", "Q2")
    first_end = _message(conversation, follow_up, "assistant", "A2")
    second = _message(conversation, question, "assistant", "B1")
    second_end = _message(conversation, _message(conversation, second, "user", "Q3"), "assistant", "B2")

    conversation_branch_select(conversation=conversation, message=first)
    assert message_path_ids(conversation=conversation) == [question.pk, first.pk, follow_up.pk, first_end.pk]
    shown, _ = message_page(conversation=conversation)
    assert [m.content for m in shown] == ["Q", "A1", "Q2", "A2"]

    conversation_branch_select(conversation=conversation, message=question)
    assert message_path_ids(conversation=conversation)[-1] == second_end.pk

    elsewhere = Conversation.objects.create(user=user, model=chat_model)
    with pytest.raises(NotFound):
        conversation_branch_select(conversation=elsewhere, message=first)


@pytest.mark.django_db(transaction=True)
async def test_a_branch_chosen_again_is_what_the_next_message_follows(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="First try"))
    await tab.send(message="Hi")
    await tab.receive_until(COMPLETE)
    upstream.script(Reply(text="Second try"))
    await tab.send(action="regenerate")
    await tab.receive_until(COMPLETE)
    first = await Message.objects.aget(conversation=conversation, content="First try")

    await sync_to_async(conversation_branch_select)(conversation=conversation, message=first)
    upstream.script(Reply(text="Third"))
    await tab.send(message="And then?")
    await tab.receive_until(COMPLETE)

    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "First try"},
        {"role": "user", "content": "And then?"},
    ]
    shown, _ = await sync_to_async(message_page)(conversation=conversation)
    assert [m.content for m in shown] == ["Hi", "First try", "And then?", "Third"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_puts_each_conversation_on_one_path_with_replaced_replies_as_siblings(user):
    executor = MigrationExecutor(connection)
    before = [("conversations", "0012_deployments")]
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    OldConversation = apps.get_model("conversations", "Conversation")
    OldMessage = apps.get_model("conversations", "Message")
    conversation = OldConversation.objects.create(user_id=user.pk)
    empty = OldConversation.objects.create(user_id=user.pk)
    rows = [
        ("user", "Hi", False),
        ("assistant", "Try 1", True),
        ("assistant", "Try 2", True),
        ("assistant", "Try 3", False),
        ("user", "More", False),
        ("assistant", "Done", False),
    ]
    ids = [
        OldMessage.objects.create(conversation_id=conversation.pk, role=role, content=text, replaced=replaced).pk
        for role, text, replaced in rows
    ]

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # today's models need every later migration too

    parents = dict(Message.objects.filter(conversation_id=conversation.pk).values_list("pk", "parent_id"))
    hi, try1, try2, try3, more, done = ids
    assert parents == {hi: None, try1: hi, try2: hi, try3: hi, more: try3, done: more}
    migrated = Conversation.objects.get(pk=conversation.pk)
    assert migrated.current_leaf_id == done
    assert message_path_ids(conversation=migrated) == [hi, try3, more, done]
    assert Conversation.objects.get(pk=empty.pk).current_leaf_id is None

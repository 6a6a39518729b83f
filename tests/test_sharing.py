"""Share links: a public read-only snapshot of the current path, listed and revoked by its owner."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from conversations.models import Conversation, Message, SharedLink, SiteSettings, UsageRecord
from tests.conftest import path_append

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user, chat_model) -> Conversation:
    conversation = Conversation.objects.create(user=user, title="Plans <script>alert(1)</script>", model=chat_model)
    question, _ = path_append(
        conversation,
        {"role": "user", "content": "Hi <b>there</b>"},
        {"role": "assistant", "content": "An **old** answer", "model_name": "fake-model"},
    )
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        model_name="fake-model",
        content="A *new* answer <img src=x onerror=alert(1)>",
        prompt_tokens=11,
        completion_tokens=7,
    )
    UsageRecord.objects.create(
        user=user,
        message=reply,
        model="fake-model",
        prompt_tokens=11,
        completion_tokens=7,
        cost="0.12345678",
        state="settled",
    )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=reply)
    conversation.refresh_from_db()
    return conversation


def share(client, conversation) -> SharedLink:
    response = client.post(f"/c/{conversation.pk}/share")
    assert response.status_code == 302
    return SharedLink.objects.get(pk=int(response["Location"].split("new=")[1]))


def test_a_shared_link_shows_the_current_path_to_anyone_and_nothing_else(client, user, conversation):
    client.force_login(user)
    link = share(client, conversation)
    listing = client.get(f"/shared/?new={link.pk}").content.decode()
    assert f"/s/{link.token}" in listing

    anonymous = Client()
    response = anonymous.get(f"/s/{link.token}")
    page = response.content.decode()
    assert response.status_code == 200
    assert (
        response["X-Robots-Tag"] == "noindex, nofollow" and '<meta name="robots" content="noindex, nofollow">' in page
    )
    assert "Hi &lt;b&gt;there&lt;/b&gt;" in page and "<em>new</em> answer" in page
    assert "old" not in page.replace("Older", "")  # the other branch is not shared
    assert "<script>alert(1)</script>" not in page and "<img" not in page and "&lt;img src=x onerror" in page
    assert "Plans &lt;script&gt;" in page
    assert "alice" not in page and "0.123" not in page and "tokens" not in page  # no user, no usage
    assert "Fake Model" in page  # the model's name is kept


def test_the_snapshot_does_not_follow_later_messages(client, user, conversation):
    client.force_login(user)
    link = share(client, conversation)
    path_append(conversation, {"role": "user", "content": "A later secret"})
    assert "A later secret" not in Client().get(f"/s/{link.token}").content.decode()


def test_revoked_and_unknown_links_are_404(client, user, conversation):
    client.force_login(user)
    link = share(client, conversation)
    client.post(f"/shared/{link.pk}/revoke")
    assert Client().get(f"/s/{link.token}").status_code == 404
    assert Client().get("/s/no-such-token").status_code == 404
    assert "revoked" in client.get("/shared/").content.decode()


def test_sharing_turned_off_refuses_new_links_and_hides_existing_ones(client, user, conversation):
    client.force_login(user)
    link = share(client, conversation)
    SiteSettings.objects.update_or_create(pk=1, defaults={"sharing_enabled": False})
    assert Client().get(f"/s/{link.token}").status_code == 404
    response = client.post(f"/c/{conversation.pk}/share", follow=True)
    assert "Sharing is turned off on this site." in response.content.decode()
    assert SharedLink.objects.count() == 1
    SiteSettings.objects.filter(pk=1).update(sharing_enabled=True)
    assert Client().get(f"/s/{link.token}").status_code == 200


def test_another_user_cannot_share_list_or_revoke_someone_elses(client, user, other_user, conversation):
    client.force_login(user)
    link = share(client, conversation)
    intruder = Client()
    intruder.force_login(other_user)
    assert intruder.post(f"/c/{conversation.pk}/share").status_code == 404
    assert intruder.post(f"/shared/{link.pk}/revoke").status_code == 404
    assert link.token not in intruder.get("/shared/").content.decode()
    assert SharedLink.objects.get(pk=link.pk).is_active


def test_an_empty_conversation_has_nothing_to_share(client, user):
    empty = Conversation.objects.create(user=user, title="Empty")
    client.force_login(user)
    assert client.post(f"/c/{empty.pk}/share").status_code == 404


def test_admins_see_every_users_links(client, user, other_user, conversation, django_user_model):
    client.force_login(user)
    share(client, conversation)
    theirs = Conversation.objects.create(user=other_user, title="Bob's shared talk")
    path_append(theirs, {"role": "user", "content": "hello"})
    bob = Client()
    bob.force_login(other_user)
    share(bob, theirs)
    admin = django_user_model.objects.create_superuser(username="root", password="root-password-1")
    client.force_login(admin)
    page = client.get("/admin/conversations/sharedlink/").content.decode()
    assert "Bob&#x27;s shared talk" in page and re.search(r"Plans &lt;script&gt;", page)

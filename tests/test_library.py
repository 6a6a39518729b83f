"""Finding and keeping conversations through the pages: the sidebar's pages, pin, archive, folders,
bulk actions and the search view, as a signed-in user's browser requests them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, Folder, Message
from tests.conftest import path_append

pytestmark = pytest.mark.django_db


def sidebar_links(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'id="conversation-(\d+)-link"', html)]


def nav(html: str) -> str:
    return html.split('<nav id="conversations"')[1].split("</nav>")[0]


def next_page_url(html: str) -> str | None:
    found = re.search(r'class="sidebar-more muted" hx-get="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def many(user, count: int) -> list[Conversation]:
    """``count`` conversations, the first one the most recently active, a day apart from the 10th on."""
    now = timezone.now()
    created = Conversation.objects.bulk_create(Conversation(user=user, title=f"Chat {i}") for i in range(count))
    for i, conversation in enumerate(created):
        Conversation.objects.filter(pk=conversation.pk).update(
            updated_at=now - timedelta(minutes=i) - timedelta(days=max(0, i - 9))
        )
    return created


def test_the_sidebar_pages_by_cursor_past_200_with_no_cap_grouped_by_day(client, user, other_user):
    chats = many(user, 230)
    many(other_user, 3)
    client.force_login(user)
    html = client.get("/").content.decode()
    seen = sidebar_links(nav(html))
    groups = re.findall(r'<h2 class="group">([^<]+)</h2>', nav(html))
    url = next_page_url(html)
    while url:
        page = client.get(url, HTTP_HX_REQUEST="true").content.decode()
        seen += sidebar_links(page)
        groups += re.findall(r'<h2 class="group">([^<]+)</h2>', page)
        url = next_page_url(page)
    assert seen == [c.pk for c in chats]  # every one, once, newest activity first
    assert groups == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days", "Older"]  # each heading once


def test_the_open_conversation_is_listed_and_marked_even_far_down(client, user):
    chats = many(user, 120)
    client.force_login(user)
    html = nav(client.get(f"/c/{chats[100].pk}/").content.decode())
    assert chats[100].pk in sidebar_links(html)
    assert re.search(rf'class="conversation-link current"\s+id="conversation-{chats[100].pk}-link"', html)


def test_a_bad_sidebar_cursor_is_a_400_not_a_500(client, user):
    client.force_login(user)
    assert client.get("/chats?cursor=garbage").status_code == 400


def test_pin_archive_restore_and_move_to_a_folder(client, user):
    first, second = many(user, 2)
    client.force_login(user)
    before = Conversation.objects.get(pk=second.pk).updated_at

    client.post(f"/c/{second.pk}/pin", {"pinned": "1"})
    html = nav(client.get("/").content.decode())
    assert sidebar_links(html)[0] == second.pk and '<h2 class="group">Pinned</h2>' in html
    assert Conversation.objects.get(pk=second.pk).updated_at == before  # listing order is activity, not keeping

    response = client.post(f"/c/{second.pk}/archive", {"archived": "1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert second.pk not in sidebar_links(nav(client.get("/").content.decode()))
    archived_page = client.get("/archived/").content.decode()
    assert "Chat 1" in archived_page and "Chat 0" not in archived_page
    assert not Conversation.objects.get(pk=second.pk).pinned  # archiving unpins

    client.post(f"/c/{second.pk}/archive", {"archived": "0", "next": "/archived/"})
    assert second.pk in sidebar_links(nav(client.get("/").content.decode()))

    client.post(f"/c/{first.pk}/move", {"new_folder": "  Work   notes "})
    folder = Folder.objects.get(user=user)
    assert folder.name == "Work notes" and Conversation.objects.get(pk=first.pk).folder == folder
    client.post(f"/c/{second.pk}/move", {"folder": str(folder.pk)})
    assert set(folder.conversations.values_list("pk", flat=True)) == {first.pk, second.pk}
    client.post(f"/c/{first.pk}/move", {"folder": ""})
    assert Conversation.objects.get(pk=first.pk).folder is None


def test_a_duplicate_folder_name_is_refused_with_a_notice(client, user):
    (chat,) = many(user, 1)
    client.force_login(user)
    client.post(f"/c/{chat.pk}/move", {"new_folder": "Ideas"})
    response = client.post(f"/c/{chat.pk}/move", {"new_folder": "ideas", "next": f"/c/{chat.pk}/"}, follow=True)
    assert "You already have a folder named “ideas”." in response.content.decode()
    assert Folder.objects.filter(user=user).count() == 1


def test_bulk_archive_move_and_delete(client, user):
    chats = many(user, 5)
    folder = Folder.objects.create(user=user, name="Later")
    client.force_login(user)
    ids = [str(c.pk) for c in chats[:3]]
    response = client.post("/c/bulk", {"ids": ids, "action": "archive"}, follow=True)
    assert "3 conversations archived." in response.content.decode()
    assert set(Conversation.objects.filter(archived=True).values_list("pk", flat=True)) == {c.pk for c in chats[:3]}

    client.post("/c/bulk", {"ids": [str(chats[3].pk), str(chats[4].pk)], "action": "move", "folder": str(folder.pk)})
    assert set(folder.conversations.values_list("pk", flat=True)) == {chats[3].pk, chats[4].pk}

    client.post("/c/bulk", {"ids": ids, "action": "delete"})
    assert set(Conversation.objects.values_list("pk", flat=True)) == {chats[3].pk, chats[4].pk}

    response = client.post("/c/bulk", {"action": "archive"}, follow=True)
    assert "Select at least one conversation." in response.content.decode()


def test_another_users_conversations_and_folders_answer_404_and_nothing_changes(client, user, other_user):
    (mine,) = many(user, 1)
    (theirs,) = many(other_user, 1)
    their_folder = Folder.objects.create(user=other_user, name="Private")
    client.force_login(user)
    for url, data in [
        (f"/c/{theirs.pk}/pin", {"pinned": "1"}),
        (f"/c/{theirs.pk}/archive", {"archived": "1"}),
        (f"/c/{theirs.pk}/move", {"folder": ""}),
        (f"/c/{mine.pk}/move", {"folder": str(their_folder.pk)}),
        ("/c/bulk", {"ids": [str(mine.pk), str(theirs.pk)], "action": "delete"}),
        ("/c/bulk", {"ids": [str(mine.pk)], "action": "move", "folder": str(their_folder.pk)}),
        (f"/folders/{their_folder.pk}/delete", {}),
        ("/c/bulk", {"ids": ["99999999999999999999"], "action": "archive"}),
    ]:
        assert client.post(url, data).status_code == 404, url
    assert Conversation.objects.filter(pk__in=[mine.pk, theirs.pk], archived=False, pinned=False).count() == 2
    assert Folder.objects.filter(pk=their_folder.pk).exists() and Conversation.objects.get(pk=mine.pk).folder is None
    assert client.get(f"/c/{theirs.pk}/at/1").status_code == 404


def test_search_view_answers_htmx_with_escaped_results_and_lands_on_the_message_branch(client, user, other_user):
    conversation = Conversation.objects.create(user=user, title="<b>Bold</b> title")
    (question,) = path_append(conversation, {"role": "user", "content": "How?"})
    hit = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="Try <script>x()</script> here"
    )
    path_append(conversation, {"role": "assistant", "content": "A newer sibling"}, {"role": "user", "content": "ok"})
    theirs = Conversation.objects.create(user=other_user, title="script kiddie")
    Message.objects.create(conversation=theirs, role="user", content="script of bob")
    client.force_login(user)
    html = client.get("/search/", {"q": "script"}, HTTP_HX_REQUEST="true").content.decode()
    assert "&lt;<mark>script</mark>&gt;x()" in html and "<script>" not in html
    assert "&lt;b&gt;Bold&lt;/b&gt; title" in html and "bob" not in html and "kiddie" not in html
    assert f'href="/c/{conversation.pk}/at/{hit.pk}"' in html
    landing = client.get(f"/c/{conversation.pk}/at/{hit.pk}")
    assert landing["Location"] == f"/c/{conversation.pk}/#message-{hit.pk}"
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == hit.pk  # the match's branch is now the one shown
    page = client.get(landing["Location"]).content.decode()
    assert f'id="message-{hit.pk}"' in page and "A newer sibling" not in page
    # Without htmx, the same search is a page; a filter it cannot use is said plainly.
    assert "<mark>script</mark>" in client.get("/search/", {"q": "script"}).content.decode()
    assert "pinned: takes yes or no." in client.get("/search/", {"q": "pinned:maybe"}).content.decode()
    assert client.get("/search/", {"q": "x", "cursor": "nonsense"}, HTTP_HX_REQUEST="true").status_code == 200


def test_folders_are_listed_made_searched_and_deleted_from_the_sidebar(client, user):
    (chat,) = many(user, 1)
    client.force_login(user)
    client.post("/folders/", {"name": "Recipes & <b>bits</b>"})
    folder = Folder.objects.get(user=user)
    client.post(f"/c/{chat.pk}/move", {"folder": str(folder.pk)})
    html = client.get("/").content.decode()
    assert "Recipes &amp; &lt;b&gt;bits&lt;/b&gt;" in html and "Folders (1)" in html
    link = re.search(r'href="(/search/\?q=folder[^"]+)"', html).group(1).replace("&amp;", "&")
    assert sidebar_links(client.get(link).content.decode()) == [] and "Chat 0" in client.get(link).content.decode()
    client.post(f"/folders/{folder.pk}/delete")
    assert not Folder.objects.exists() and Conversation.objects.get(pk=chat.pk).folder is None

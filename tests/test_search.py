"""Search over a user's conversations, through the service, on whichever database the suite runs on."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from conversations.core.errors import InvalidInput
from conversations.library.search import conversation_search, search_query_parse
from conversations.models import Conversation, Folder, Message
from tests.conftest import path_append

pytestmark = pytest.mark.django_db


def search(user, text: str, **kwargs):
    return conversation_search(user=user, query=search_query_parse(text), **kwargs)


def talk(user, title: str, *texts: str, **fields) -> Conversation:
    conversation = Conversation.objects.create(user=user, title=title, **fields)
    for i, text in enumerate(texts):
        Message.objects.create(conversation=conversation, role="user" if i % 2 == 0 else "assistant", content=text)
    return conversation


def message_ids(page) -> list[int]:
    return [hit.message_id for hit in page.hits if hit.message_id]


def test_words_phrases_and_prefixes_find_messages_and_titles(user):
    trip = talk(user, "Trip planning", "Where should I go in Portugal?", "Lisbon and Porto are lovely in spring.")
    talk(user, "Sourdough", "My starter smells of acetone", "Feed it twice a day.")
    page = search(user, "porto ")
    assert [hit.conversation_id for hit in page.hits] == [trip.pk]
    assert "<mark>Porto</mark>" in page.hits[0].snippet
    # The last word typed matches as a prefix: results come while typing.
    assert len(message_ids(search(user, "portu"))) == 1
    assert message_ids(search(user, "portu ")) == []
    # Every word must match; a quoted phrase matches the words in order.
    assert len(message_ids(search(user, "lisbon spring"))) == 1
    assert message_ids(search(user, "lisbon winter")) == []
    assert len(message_ids(search(user, '"lovely in spring"'))) == 1
    assert message_ids(search(user, '"spring in lovely"')) == []
    # A title match comes first, without a message, landing on the conversation.
    titled = search(user, "sourdough")
    assert titled.hits[0].message_id is None and titled.hits[0].title == "Sourdough"


def test_every_branch_is_searched_not_only_the_current_path(user):
    conversation = Conversation.objects.create(user=user, title="Branches")
    (question,) = path_append(conversation, {"role": "user", "content": "Name a bird"})
    first = Message.objects.create(conversation=conversation, parent=question, role="assistant", content="A heron")
    (second,) = path_append(conversation, {"role": "assistant", "content": "A pelican"})
    assert conversation.current_leaf_id == second.pk
    assert message_ids(search(user, "heron ")) == [first.pk]
    assert message_ids(search(user, "pelican ")) == [second.pk]


def test_snippets_escape_markup_and_mark_only_the_matches(user):
    talk(user, "<img src=x onerror=alert(1)>", "Render <script>alert('x')</script> safely please")
    page = search(user, "script ")
    snippets = [str(hit.snippet) for hit in page.hits]
    assert any("&lt;<mark>script</mark>&gt;alert(&#x27;x&#x27;)&lt;/<mark>script</mark>&gt;" in s for s in snippets)
    assert all("<script" not in s and "<img" not in s for s in snippets)
    titled = search(user, "onerror")
    assert titled.hits[0].message_id is None and "<img" not in titled.hits[0].snippet


def test_a_long_message_is_cut_around_its_first_match(user):
    talk(user, "Long", "filler " * 500 + "needle in the middle " + "filler " * 500)
    [hit] = search(user, "needle").hits
    assert hit.snippet.startswith("… ") and hit.snippet.endswith(" …")
    assert "<mark>needle</mark> in the middle" in hit.snippet
    assert len(hit.snippet) < 300


def test_another_users_conversations_never_appear(user, other_user):
    talk(other_user, "Secret plans of bob", "The secret password is swordfish")
    talk(user, "Mine", "nothing secret here")
    page = search(user, "secret")
    assert [hit.title for hit in page.hits] == ["Mine"]
    assert search(user, "swordfish").hits == []
    assert search(user, "bob").hits == []


def test_the_index_follows_edits_streaming_saves_and_deletions(user):
    conversation = talk(user, "Live", "a question")
    reply = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="Half")
    Message.objects.filter(pk=reply.pk).update(content="Half a reply about pelicans")
    assert message_ids(search(user, "pelicans")) == [reply.pk]
    reply.content = "Rewritten about herons"
    reply.save()
    assert message_ids(search(user, "pelicans")) == []
    assert message_ids(search(user, "herons")) == [reply.pk]
    conversation.title = "Birdwatching"
    conversation.save()
    assert search(user, "birdwatching").hits[0].conversation_id == conversation.pk
    conversation.delete()
    assert search(user, "herons").hits == [] and search(user, "birdwatching").hits == []


def test_filters_narrow_by_pinned_archived_folder_model_and_date(user, chat_model):
    work = Folder.objects.create(user=user, name="Work stuff")
    pinned = talk(user, "A", "budget review", pinned=True)
    archived = talk(user, "B", "budget archive", archived=True)
    filed = talk(user, "C", "budget filed", folder=work, model=chat_model)
    old = talk(user, "D", "budget old")
    Message.objects.filter(conversation=old).update(created_at=datetime(2024, 5, 1, tzinfo=timezone.utc))

    def found(text: str) -> set[int]:
        return {hit.conversation_id for hit in search(user, text).hits}

    everything = {pinned.pk, archived.pk, filed.pk, old.pk}
    assert found("budget") == everything
    assert found("budget pinned:yes") == {pinned.pk}
    assert found("budget pinned:no") == everything - {pinned.pk}
    assert found("budget archived:yes") == {archived.pk}
    assert found('budget folder:"work stuff"') == {filed.pk}
    assert found("budget folder:none") == everything - {filed.pk}
    assert found("budget model:fake-model") == {filed.pk}
    assert found("budget model:Fake Model") == set()  # a name with spaces needs quotes
    assert found('budget model:"Fake Model"') == {filed.pk}
    assert found("budget before:2025-01-01") == {old.pk}
    assert found("budget after:2024-05-01") == everything
    assert found("budget after:2024-05-02") == everything - {old.pk}
    # Filters alone list what they select.
    assert found("archived:yes") == {archived.pk}


def test_results_page_by_cursor_newest_first(user):
    conversation = talk(user, "Many", *[f"entry number {i} of the pile" for i in range(45)])
    first = search(user, "pile", limit=20)
    second = search(user, "pile", limit=20, cursor=first.next_cursor)
    third = search(user, "pile", limit=20, cursor=second.next_cursor)
    ids = message_ids(first) + message_ids(second) + message_ids(third)
    expected = list(conversation.messages.order_by("-created_at", "-id").values_list("pk", flat=True))
    assert ids == expected and third.next_cursor == ""


@pytest.mark.parametrize(
    "text, error",
    [
        ("pinned:maybe", "pinned: takes yes or no."),
        ("after:2026-13-01", "after: takes a date like 2026-12-01."),
        ("folder:", "folder: takes a name."),
        (" ".join(f"w{i}" for i in range(20)), "A search can have at most 16 words or phrases."),
    ],
)
def test_filters_it_cannot_use_are_told_apart(user, text, error):
    with pytest.raises(InvalidInput) as caught:
        search(user, text)
    assert caught.value.message == error


def test_punctuation_and_operators_in_the_text_are_only_words(user):
    talk(user, "Ops", "he said \"AND\" OR NOT -x * : ( ) 'quoted'")
    for text in ['"AND', "OR NOT", "-x", "*", "( )", "'quoted'", "NEAR(a b)", "a:b:c"]:
        search(user, text)  # none raises or breaks the database's query syntax
    assert len(message_ids(search(user, "quoted"))) == 1

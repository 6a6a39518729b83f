"""Export and import: ChatGPT's export with branches, the chatweb JSON round trip, Open WebUI's
export, every bad input of the issue, and nobody else's conversations in an export."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from conversations.chat.selectors import message_path_ids
from conversations.core.errors import InvalidInput
from conversations.library.imports.checks import import_file_check
from conversations.library.imports.run import import_run_create, import_run_process
from conversations.models import Conversation, ImportRun, Message, StoredCompletion, UsageRecord
from tests.conftest import path_append

pytestmark = pytest.mark.django_db


def chatgpt_node(node_id, parent, children, role=None, text=None, t=None, **metadata):
    message = None
    if role is not None:
        message = {
            "id": node_id,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": t,
            "update_time": None,
            "content": {"content_type": "text", "parts": [text]},
            "status": "finished_successfully",
            "end_turn": True,
            "weight": 1.0,
            "metadata": metadata,
            "recipient": "all",
        }
    return node_id, {"id": node_id, "message": message, "parent": parent, "children": children}


def chatgpt_branched(conversation_id="c-1", title="Branching <script>alert(1)</script>") -> dict:
    """A ChatGPT conversation: the root, a hidden system message, a question, two answers (a regenerate),
    a follow-up under the second; the second branch is current."""
    mapping = dict(
        [
            chatgpt_node("root", None, ["sys"]),
            chatgpt_node("sys", "root", ["q1"], "system", "", 1.0, is_visually_hidden_from_conversation=True),
            chatgpt_node("q1", "sys", ["a1", "a2"], "user", "What is <b>2+2</b>?", 1700000000.0),
            chatgpt_node("a1", "q1", [], "assistant", "It is 5.", 1700000001.0, model_slug="gpt-4"),
            chatgpt_node("a2", "q1", ["q2"], "assistant", "It is 4.", 1700000002.5, model_slug="gpt-4o"),
            chatgpt_node("q2", "a2", ["a3"], "user", "Sure?", 1700000003.0),
            chatgpt_node(
                "a3", "q2", [], "assistant", "Yes <img src=x onerror=alert(1)>.", 1700000004.0, model_slug="gpt-4o"
            ),
        ]
    )
    return {
        "title": title,
        "create_time": 1700000000.0,
        "update_time": 1700000004.0,
        "mapping": mapping,
        "moderation_results": [],
        "current_node": "a3",
        "conversation_id": conversation_id,
        "id": conversation_id,
        "default_model_slug": "gpt-4o",
    }


def run_import(user, payload: bytes | str, name: str = "conversations.json") -> ImportRun:
    data = payload.encode() if isinstance(payload, str) else payload
    upload = io.BytesIO(data)
    sha256, total = import_file_check(upload=upload, size=len(data))
    run, _ = import_run_create(user=user, filename=name, sha256=sha256, total=total)
    return import_run_process(run=run, source=upload)


def tree(conversation: Conversation) -> dict[str, str | None]:
    """Each message's text with its parent's text: the shape of the tree, whatever the ids."""
    texts = dict(conversation.messages.values_list("pk", "content"))
    return {content: texts.get(parent) for content, parent in conversation.messages.values_list("content", "parent")}


def path_texts(conversation: Conversation) -> list[str]:
    texts = dict(conversation.messages.values_list("pk", "content"))
    return [texts[pk] for pk in message_path_ids(conversation=conversation)]


def test_a_chatgpt_export_keeps_its_branches_and_is_never_billed(user):
    run = run_import(user, json.dumps([chatgpt_branched()]))
    assert (run.status, run.format, run.imported, run.total) == ("done", "chatgpt", 1, 1)
    conversation = Conversation.objects.get(user=user)
    assert conversation.title == "Branching <script>alert(1)</script>" and conversation.imported_from == "chatgpt"
    assert tree(conversation) == {
        "What is <b>2+2</b>?": None,
        "It is 5.": "What is <b>2+2</b>?",
        "It is 4.": "What is <b>2+2</b>?",
        "Sure?": "It is 4.",
        "Yes <img src=x onerror=alert(1)>.": "Sure?",
    }
    assert path_texts(conversation) == ["What is <b>2+2</b>?", "It is 4.", "Sure?", "Yes <img src=x onerror=alert(1)>."]
    reply = conversation.messages.get(content="It is 4.")
    assert reply.model_name == "gpt-4o" and reply.created_at.timestamp() == 1700000002.5 and reply.imported
    assert conversation.updated_at.timestamp() == 1700000004.0
    assert not UsageRecord.objects.exists() and not StoredCompletion.objects.exists()
    assert all(conversation.messages.values_list("imported", flat=True))


def test_an_imported_conversation_renders_its_markup_inert(client, user):
    run_import(user, json.dumps([chatgpt_branched()]))
    conversation = Conversation.objects.get(user=user)
    client.force_login(user)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "Branching &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "What is &lt;b&gt;2+2&lt;/b&gt;?" in page


def test_export_then_import_gives_the_same_tree(client, user, other_user):
    conversation = Conversation.objects.create(user=user, title="Round trip", pinned=True)
    question, first = path_append(
        conversation,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "model_name": "fake-model"},
    )
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content="Hey there")
    path_append(conversation, {"role": "user", "content": "Bye"})
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=first)
    conversation.refresh_from_db()
    client.force_login(user)
    exported = client.get(f"/c/{conversation.pk}/export.json").content

    run = run_import(other_user, exported)
    assert (run.imported, run.format) == (1, "chatweb")
    copy = Conversation.objects.get(user=other_user)
    assert tree(copy) == tree(conversation) and path_texts(copy) == path_texts(conversation) == ["Hi", "Hello!"]
    assert copy.title == "Round trip" and copy.pinned
    original = {m.content: m.created_at for m in conversation.messages.all()}
    assert {m.content: m.created_at for m in copy.messages.all()} == original
    # And back out again: the same JSON but for the new ids and the imported marks.
    again = json.loads(client_for(other_user).get(f"/c/{copy.pk}/export.json").content)[0]
    first_export = json.loads(exported)[0]
    assert [(m["role"], m["content"]) for m in again["messages"]] == [
        (m["role"], m["content"]) for m in first_export["messages"]
    ]


def client_for(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


def test_an_open_webui_export_keeps_its_history_tree(user):
    chat = {
        "id": "w-1",
        "user_id": "u",
        "title": "From Open WebUI",
        "created_at": 1710000000,
        "updated_at": 1710000100,
        "pinned": False,
        "archived": False,
        "chat": {
            "title": "From Open WebUI",
            "models": ["llama3"],
            "history": {
                "currentId": "m3",
                "messages": {
                    "m1": {
                        "id": "m1",
                        "parentId": None,
                        "childrenIds": ["m2", "m3"],
                        "role": "user",
                        "content": "Hi",
                        "timestamp": 1710000000,
                    },
                    "m2": {
                        "id": "m2",
                        "parentId": "m1",
                        "childrenIds": [],
                        "role": "assistant",
                        "content": "Hello",
                        "model": "llama3",
                        "timestamp": 1710000001,
                    },
                    "m3": {
                        "id": "m3",
                        "parentId": "m1",
                        "childrenIds": [],
                        "role": "assistant",
                        "content": "Hey",
                        "model": "llama3",
                        "timestamp": 1710000002,
                    },
                },
            },
        },
    }
    run = run_import(user, json.dumps([chat]))
    assert (run.imported, run.format) == (1, "openwebui")
    conversation = Conversation.objects.get(user=user)
    assert tree(conversation) == {"Hi": None, "Hello": "Hi", "Hey": "Hi"} and path_texts(conversation) == ["Hi", "Hey"]


@pytest.mark.parametrize(
    "payload, message",
    [
        ('[{"title": "x", "mapping": {', "The file is not valid JSON, or it is cut short"),
        ("[{'single': 'quotes'}]", "The file is not valid JSON, or it is cut short"),
        (b'[{"mapping": "\xff\xfe"}]', "The file is not valid JSON, or it is cut short (lexical error: invalid bytes"),
        ('[{"mapping": {}, "title": "\ud800"}]'.encode("utf-8", "surrogatepass"), "The file is not valid JSON"),
        ('{"conversations": []}', "This is not a ChatGPT, chatweb or Open WebUI export"),
        ('[{"name": "a spreadsheet row"}]', "This is not a ChatGPT, chatweb or Open WebUI export"),
        ("[]", "The file holds no conversations."),
        ("", "That file is empty."),
    ],
)
def test_bad_files_are_refused_and_import_nothing(user, payload, message):
    with pytest.raises(InvalidInput) as caught:
        run_import(user, payload)
    assert caught.value.message.startswith(message)
    assert not Conversation.objects.exists() and not ImportRun.objects.exists()


def test_a_file_nested_100000_levels_deep_is_refused_as_too_deep(user):
    """195 KiB that once grew a worker past 20 GB: the first pass refuses it, and nothing is kept."""
    depth = 100_000
    payload = b'[{"mapping": ' + b"[" * depth + b"]" * depth + b"}]"
    assert len(payload) < 196 * 1024
    with pytest.raises(InvalidInput, match="nested more than 100 levels deep"):
        run_import(user, payload)
    assert not Conversation.objects.exists() and not ImportRun.objects.exists()


def test_refusing_a_deep_file_holds_only_what_it_read(user):
    """Memory grew with the square of the depth: 5,000 levels took over 100 MB; now it is what was read."""
    depth = 5_000
    payload = b"[" + b"[" * depth + b"]" * depth + b"]"
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="nested more than"):
            import_file_check(upload=io.BytesIO(payload), size=len(payload))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20


def test_a_text_longer_than_any_message_is_refused_with_the_limit(user, settings):
    settings.IMPORT_MAX_STRING = 1000
    entry = chatgpt_branched()
    entry["title"] = "x" * 1001
    with pytest.raises(InvalidInput, match="a text of 1,001 characters; at most 1,000"):
        run_import(user, json.dumps([entry]))
    assert not ImportRun.objects.exists()


def test_nesting_at_the_limit_still_imports(user, settings):
    """A real export is a few levels deep; the limit is the same 100 levels as every other JSON input."""
    entry = chatgpt_branched()
    entry["extra"] = json.loads("[" * 90 + "]" * 90)
    assert run_import(user, json.dumps([entry])).imported == 1


def test_a_byte_order_mark_before_the_json_is_fine(user):
    run = run_import(user, b"\xef\xbb\xbf" + json.dumps([chatgpt_branched()]).encode())
    assert run.imported == 1


def test_a_truncated_file_after_valid_conversations_imports_nothing(user):
    whole = json.dumps([chatgpt_branched("a"), chatgpt_branched("b")])
    with pytest.raises(InvalidInput, match="cut short"):
        run_import(user, whole[: len(whole) - 40])
    assert not Conversation.objects.exists()


def test_a_file_over_the_limit_is_refused_with_the_limit(user, settings):
    settings.IMPORT_MAX_BYTES = 1024
    with pytest.raises(InvalidInput, match=r"the largest import is 0 MB"):
        run_import(user, json.dumps([chatgpt_branched()] * 3))


def test_entries_that_cannot_be_read_are_skipped_and_said(user):
    entries = [
        chatgpt_branched("ok"),
        {"mapping": "nonsense", "conversation_id": "bad"},
        {"mapping": {}, "title": "No id"},
        chatgpt_branched("ok-2"),
    ]
    run = run_import(user, json.dumps(entries))
    assert (run.imported, run.skipped, run.status) == (2, 2, "done")
    assert "its mapping is not an object" in run.notes and "it has no conversation id" in run.notes


def test_importing_the_same_file_twice_adds_nothing_the_second_time(client, user):
    payload = json.dumps([chatgpt_branched("one"), chatgpt_branched("two")])
    run_import(user, payload)
    second = run_import(user, payload)
    assert (second.imported, second.duplicates) == (0, 2)
    assert Conversation.objects.filter(user=user).count() == 2
    client.force_login(user)
    first_run = ImportRun.objects.order_by("pk").first()
    page = client.get(f"/import/{second.pk}/?before={first_run.pk}").content.decode()
    assert "You imported this same file on" in page and "2 already imported before (skipped)" in page


def test_ten_thousand_conversations_are_written_in_batches_with_progress_saved(user, settings):
    settings.IMPORT_BATCH = 1000
    entries = [
        {
            "conversation_id": f"c{i}",
            "title": f"Chat {i}",
            "create_time": 1700000000 + i,
            "current_node": "q",
            "mapping": dict([chatgpt_node("q", None, [], "user", f"question {i}", 1700000000.0 + i)]),
        }
        for i in range(10_000)
    ]
    data = json.dumps(entries).encode()
    upload = io.BytesIO(data)
    sha256, total = import_file_check(upload=upload, size=len(data))
    run, _ = import_run_create(user=user, filename="big.json", sha256=sha256, total=total)
    progress = []
    from django.db.models.signals import post_save

    def seen(sender, instance, **kwargs):
        progress.append(instance.imported)

    post_save.connect(seen, sender=ImportRun)
    try:
        import_run_process(run=run, source=upload)
    finally:
        post_save.disconnect(seen, sender=ImportRun)
    assert progress[:3] == [1000, 2000, 3000] and progress[-1] == 10_000
    assert Conversation.objects.filter(user=user).count() == 10_000 and run.total == 10_000


def test_exports_hold_only_the_users_own_conversations(client, user, other_user):
    mine = Conversation.objects.create(user=user, title="Mine")
    path_append(mine, {"role": "user", "content": "my words"}, {"role": "assistant", "content": "my reply"})
    theirs = Conversation.objects.create(user=other_user, title="Theirs")
    path_append(theirs, {"role": "user", "content": "their secret"})
    client.force_login(user)
    assert client.get(f"/c/{theirs.pk}/export.json").status_code == 404
    assert client.get(f"/c/{theirs.pk}/export.md").status_code == 404
    everything = b"".join(client.get("/export/all.json").streaming_content)
    assert [c["title"] for c in json.loads(everything)] == ["Mine"] and b"their secret" not in everything
    archive = zipfile.ZipFile(io.BytesIO(b"".join(client.get("/export/all.zip").streaming_content)))
    assert sorted(archive.namelist()) == ["conversations.json", f"markdown/{mine.pk}-mine.md"]
    assert json.loads(archive.read("conversations.json")) == json.loads(everything)
    markdown = archive.read(f"markdown/{mine.pk}-mine.md").decode()
    assert markdown.startswith("# Mine\n") and "my reply" in markdown and "their" not in markdown
    other_run = ImportRun.objects.create(user=other_user, sha256="x", total=1)
    assert client.get(f"/import/{other_run.pk}/").status_code == 404


def test_markdown_is_the_current_path(client, user):
    conversation = Conversation.objects.create(user=user, title="Paths")
    (question,) = path_append(conversation, {"role": "user", "content": "Q"})
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content="Old answer")
    path_append(conversation, {"role": "assistant", "content": "New answer", "model_name": "fake-model"})
    client.force_login(user)
    text = client.get(f"/c/{conversation.pk}/export.md").content.decode()
    assert "New answer" in text and "Old answer" not in text and "## fake-model · " in text


def test_the_upload_page_says_what_is_wrong_and_keeps_nothing(client, user):
    client.force_login(user)
    response = client.post("/import/", {"file": SimpleUploadedFile("notes.json", b'{"not": "a list"}')})
    assert response.status_code == 400
    assert "This is not a ChatGPT, chatweb or Open WebUI export" in response.content.decode()
    assert client.post("/import/", {}).status_code == 400
    assert not ImportRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_upload_imports_in_the_background_and_v1_lists_none_of_it(live_server_url, user, chat_model):
    import openai
    from django.test import Client

    from conversations.accounts.api_keys import api_key_create
    from tests.conftest import eventually

    browser = Client()
    browser.force_login(user)
    upload = SimpleUploadedFile(
        "conversations.json", json.dumps([chatgpt_branched("x1"), chatgpt_branched("x2")]).encode()
    )
    response = browser.post("/import/", {"file": upload})
    assert response.status_code == 302
    run_id = int(response["Location"].rstrip("/").split("/")[-1])
    done = eventually(lambda: ImportRun.objects.filter(pk=run_id, status="done").first(), timeout=30)
    assert done.imported == 2
    page = browser.get(f"/import/{run_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "Done: 2 conversations imported." in page and "hx-trigger" not in page  # no more polling
    sdk = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=api_key_create(user=user, name="t")[1], max_retries=0)
    assert list(sdk.chat.completions.list()) == []
    assert Message.objects.filter(conversation__user=user, imported=True).count() == 10
